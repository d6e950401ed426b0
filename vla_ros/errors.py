"""The one exception family of vla_ros.

Cores raise these with the offending data attached; nodes catch them at the callback boundary and
keep the robot safe; the CLI prints their message (no traceback) and exits 2.
"""
import difflib
from collections.abc import Iterable


class VlaRosError(Exception):
    """Base of every error vla_ros raises on purpose: a user mistake or a refused input."""


class ResourceNotFound(VlaRosError):
    """A file the package ships (config, URDF, launch file) cannot be found."""

    def __init__(self, what: str, searched: list[str]):
        self.what = what
        self.searched = searched
        super().__init__(f"{what} not found; looked in: {', '.join(searched)}")


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
