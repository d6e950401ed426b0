"""Where the package's shipped files (launch/, config/, urdf/) live, however it was installed."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from vla_ros.errors import ResourceNotFound

PACKAGE = "vla_ros"
_MODULE_DIR = Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The repository root when vla_ros runs from its source tree (editable or symlink installs)."""
    root = _MODULE_DIR.parent
    return root if (root / "package.xml").is_file() and (root / "setup.py").is_file() else None


def install_prefixes() -> list[Path]:
    """Prefixes that may hold an installed vla_ros: AMENT_PREFIX_PATH entries, then this Python's."""
    entries = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([*entries, Path(sys.prefix)]))


def installed_prefix() -> Path | None:
    """The first prefix whose ament index registers vla_ros (what `ros2 run` and `ros2 launch` use)."""
    for prefix in install_prefixes():
        if (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file():
            return prefix
    return None


def share_dir() -> Path:
    """The directory holding launch/, config/ and urdf/.

    The source checkout wins when there is one, so edits to config/ take effect without
    reinstalling; otherwise the installed share/vla_ros.
    """
    root = source_checkout()
    if root is not None:
        return root
    prefix = installed_prefix()
    if prefix is not None:
        return prefix / "share" / PACKAGE
    raise ResourceNotFound(
        "the vla_ros share directory",
        [str(p / "share" / PACKAGE) for p in install_prefixes()],
    )

