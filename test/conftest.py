"""Session isolation for ROS tests, the `ros` fixture, and the slow-test switch.

Plain `pytest` runs the fast tests; `make test` adds `--run-slow` for the slow ones: every test
that starts processes through the `ros` fixture (marked slow here, so the rule holds without
anyone remembering it) and those marked `slow` by hand (training, installs, expert reliability).
"""
import os
import random
import signal
import tempfile

import pytest

from harness import isolated

# Set before any test module initialises rclpy; every child process inherits them.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 200))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="vla_ros-test-roslog-")
os.environ.setdefault("MUJOCO_GL", "egl")
# A shell script that runs `make test` in the background starts it with SIGINT ignored, and every
# child would inherit that: the tests stop nodes with SIGINT, as Ctrl-C does. Children start with
# SIGINT at its default only if this process handles it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", help="also run tests marked slow (`make test` does)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "ros" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (make test does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return (
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    )


@pytest.fixture
def ros(tmp_path):
    """A RosHarness whose children are all gone when the test ends; a survivor fails the test."""
    with isolated(tmp_path) as harness:
        yield harness
