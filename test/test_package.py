"""The package as users install it: package.xml, the pip layout, and the colcon layout."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

from harness import ros2_run

REPO = Path(__file__).resolve().parents[1]
# What a copy of the source tree leaves out: the venvs (.venv-lerobot is 9 GB), git, build and run outputs.
NOT_SOURCE = shutil.ignore_patterns(".venv*", ".git", "*.egg-info", "build", "__pycache__", "bench_results")
NODE_EXECUTABLES = ["policy_node", "controller_node", "sim_node", "recorder_node", "policy_server", "teleop_node"]
REQUIRED_EXEC_DEPENDS = {
    "rclpy", "sensor_msgs", "trajectory_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs",
    "std_srvs", "rosgraph_msgs", "launch_ros", "python3-numpy", "python3-opencv",
    "python3-transforms3d", "python3-torch",
}


def test_package_xml_is_wellformed_format3_ament_python():
    """The package.xml passes xmllint, and catkin_pkg validates it as a format 3 ament_python package."""
    subprocess.run(["xmllint", "--noout", str(REPO / "package.xml")], check=True)
    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.get_build_type() == "ament_python"
    assert REQUIRED_EXEC_DEPENDS <= {dep.name for dep in package.exec_depends}
    assert "python3-pytest" in {dep.name for dep in package.test_depends}


def test_package_imports_in_a_fresh_interpreter():
    """`import vla_ros` works in the venv's own python."""
    result = subprocess.run([sys.executable, "-c", "import vla_ros; print(vla_ros.__version__)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0.1.0"


def check_layout(prefix: Path) -> None:
    """The files `ros2 run`/`ros2 launch` and a PATH lookup need under an install prefix."""
    assert (prefix / "share/ament_index/resource_index/packages/vla_ros").is_file()
    assert (prefix / "share/vla_ros/package.xml").read_text() == (REPO / "package.xml").read_text()
    for folder in ("launch", "config", "urdf"):
        shipped = sorted(p.relative_to(REPO) for p in (REPO / folder).rglob("*")
                         if p.is_file() and "__pycache__" not in p.parts)
        share = prefix / "share/vla_ros"
        installed = sorted(p.relative_to(share) for p in (share / folder).rglob("*")
                           if p.is_file() and "__pycache__" not in p.parts)  # pip byte-compiles launch/*.py
        assert installed == shipped
    for name in NODE_EXECUTABLES:
        for path in (prefix / "lib/vla_ros" / name, prefix / "bin" / name):
            assert path.is_file() and path.stat().st_mode & 0o111, f"{path} missing or not executable"


def test_venv_has_the_ros2_run_layout():
    """`make setup`'s editable install put lib/vla_ros, bin and share/vla_ros into the venv."""
    check_layout(Path(sys.prefix))


def test_ros2_run_shim_reaches_the_entry_point():
    """lib/vla_ros/policy_server execs the console script: the node checks its parameters."""
    result = subprocess.run([ros2_run("policy_server"), "--ros-args", "-p", "policy:=hodl"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "no policy backend 'hodl'" in result.stderr


@pytest.mark.slow
def test_plain_pip_install_gives_the_same_layout(tmp_path):
    """A non-editable `pip install .` into a fresh venv installs the ros2 run layout too."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   env={"PATH": "/usr/bin:/bin"})
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
         "--no-deps", str(source)],
        check=True,
    )
    check_layout(venv)
    # Without its dependencies the node cannot run, but the shim reaches the entry point installed here.
    result = subprocess.run([str(venv / "lib/vla_ros/policy_server")], capture_output=True, text=True)
    assert result.returncode != 0 and f"{venv}/lib/" in result.stderr and "vla_ros/nodes/policy_server.py" in \
        result.stderr, result.stderr


@pytest.mark.parametrize("symlink", [False, True], ids=["copy", "symlink-install"])
def test_colcon_build_then_ros2_run_starts_a_node(ros, tmp_path, symlink):
    """`colcon build` in a workspace installs the layout, and lib/vla_ros/<node> runs after sourcing."""
    workspace = tmp_path / "ws"
    shutil.copytree(REPO, workspace / "src/vla_ros", ignore=NOT_SOURCE)
    colcon = [str(Path(sys.executable).parent / "colcon"), "build"] + (["--symlink-install"] if symlink else [])
    subprocess.run(colcon, cwd=workspace, check=True, capture_output=True, timeout=300)
    check_layout(workspace / "install/vla_ros")
    setup = workspace / "install/setup.bash"
    diagnostics = ros.diagnostics()
    ros.start(["bash", "-c", f"source {setup} && exec {workspace}/install/vla_ros/lib/vla_ros/sim_node"],
              name="sim_node")
    diagnostics.wait("sim_node", timeout_s=30, what="the built sim_node's status")
