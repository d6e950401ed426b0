"""`vla-ros doctor`: passes here, and fails with the fix when a piece is missing."""
import os
import subprocess
import sys

import pytest

from harness import console_script
from vla_ros import doctor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_doctor_passes_in_the_venv_and_prints_every_check():
    """Every check passes here: exit 0 and one table row per check, the DDS round trip included."""
    result = subprocess.run([console_script("vla-ros"), "doctor"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    for each in doctor.CHECKS:
        assert each.name in result.stdout
    assert "FAIL" not in result.stdout
    assert "round trip p50" in result.stdout and "rmw_fastrtps_cpp" in result.stdout


def test_a_failing_check_exits_nonzero_with_its_fix(capsys):
    """A check that raises becomes a FAIL row carrying its fix, and the exit code is 1."""
    def broken() -> str:
        raise RuntimeError("the widget is missing")

    results = [doctor.Check("fine", lambda: "all good", fix="-")(),
               doctor.Check("widget", broken, fix="install the widget")()]
    assert [r.ok for r in results] == [True, False]
    assert doctor.report(results) == 1
    out = capsys.readouterr().out
    assert "the widget is missing" in out and "install the widget" in out


@pytest.mark.slow
def test_doctor_without_the_rmw_says_what_to_install(tmp_path):
    """In a venv with rclpy but no RMW package, doctor exits 1 and names ros-rmw-fastrtps-cpp."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-c", os.path.join(REPO, "constraints.txt"),
         "ros-rclpy", "ros-std-msgs", "rich"],
        check=True,
    )
    # A clean environment: the outer venv's bootstrap marker and library path must not leak in.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = REPO
    result = subprocess.run([str(venv / "bin/python"), "-m", "vla_ros.cli", "doctor"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "rclpy and RMW" in line)
    assert "FAIL" in row
    assert "pip install ros-rmw-fastrtps-cpp" in result.stdout.replace("\n", " ").replace("│", " ")
