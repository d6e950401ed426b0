"""The layering rule of ARCHITECTURE.md: the cores never import rclpy."""
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vla_ros"
CORES = ["embodiment", "control", "policy", "model", "data", "sim"]


@pytest.mark.parametrize("core", [c for c in CORES if (PACKAGE / c).is_dir()])
def test_core_does_not_import_rclpy(core):
    """Importing every module of a core leaves rclpy unloaded (checked in a fresh interpreter)."""
    modules = sorted(
        ".".join(("vla_ros", core, *path.relative_to(PACKAGE / core).with_suffix("").parts))
        for path in (PACKAGE / core).rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module.removesuffix('.__init__'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rcl_interfaces')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{core} pulls in ROS: {result.stdout}"
