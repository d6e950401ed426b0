"""Where a robot description comes from: a URDF file, or a xacro file expanded with its arguments.

xacro (the PyPI package) expands the file in-process. Its $(find PKG) asks ament_index_python,
which knows only installed packages; here it is answered by the lookup package:// meshes use
(`vla_ros.embodiment.urdf.package_directory`): AMENT_PREFIX_PATH, ROS_PACKAGE_PATH, the
embodiment's package_dirs, the xacro file's folder and its parents.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from vla_ros.embodiment.urdf import RobotDescription, UrdfError, package_directory

XACRO_SUFFIXES = (".xacro",)  # robot.urdf.xacro and robot.xacro both end so
_XACRO_LOCK = threading.Lock()  # xacro keeps its state in module globals


def is_xacro(path: Path) -> bool:
    """Whether `path` names a xacro file (to be expanded before it is a URDF)."""
    return Path(path).suffix in XACRO_SUFFIXES


def load_description(path: Path, package_dirs: tuple[str, ...] = (),
                     xacro_args: Mapping[str, str] | None = None) -> RobotDescription:
    """The robot description at `path`: a URDF read as is, a xacro file expanded with `xacro_args`."""
    path = Path(path)
    if not is_xacro(path):
        return RobotDescription(path, package_dirs)
    return RobotDescription(path, package_dirs, expand_xacro(path, xacro_args or {}, package_dirs))


def expand_xacro(path: Path, arguments: Mapping[str, str], package_dirs: tuple[str, ...] = ()) -> bytes:
    """The URDF a xacro file expands to with `arguments` (name -> value), as bytes."""
    import xacro

    if not path.is_file():
        raise UrdfError(path, "cannot read the xacro file (no such file)")
    with _XACRO_LOCK, _find_packages(path, package_dirs):
        try:
            document = xacro.process_file(str(path), mappings=dict(arguments))
        except Exception as error:  # xacro raises XacroException, its parser's and eval's own errors
            raise UrdfError(path, f"xacro cannot expand it: {type(error).__name__}: {error}",
                            _xacro_fix(error)) from error
    return document.toxml(encoding="utf-8")


def _xacro_fix(error: Exception) -> str:
    text = str(error)
    if "Undefined substitution argument" in text or "ArgException" in text:
        return "pass the missing argument with --xacro-arg NAME:=VALUE (kept as xacro_args in the file)"
    if "package" in text.lower() or "find" in text:
        return "add the package's folder to package_dirs, or set AMENT_PREFIX_PATH/ROS_PACKAGE_PATH"
    return "fix the xacro file, or expand it yourself and pass the .urdf"


@contextmanager
def _find_packages(source: Path, package_dirs: tuple[str, ...]):
    """While expanding `source`, answer xacro's $(find PKG) with package_directory()."""
    from xacro import substitution_args

    def find(package: str) -> str:
        found = package_directory(package, source, package_dirs)
        if found is None:
            raise UrdfError(source, f"$(find {package}): no package {package!r} found")
        return str(found)

    saved = substitution_args._eval_find, substitution_args._eval_dict["find"]
    substitution_args._eval_find = substitution_args._eval_dict["find"] = find
    try:
        yield
    finally:
        substitution_args._eval_find, substitution_args._eval_dict["find"] = saved
