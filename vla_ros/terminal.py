"""The console every command prints tables to."""
from rich.console import Console

MIN_WIDTH = 140


def console() -> Console:
    """A rich Console at least MIN_WIDTH wide, so tables stay readable in logs and pipes."""
    return Console(width=max(MIN_WIDTH, Console().width))
