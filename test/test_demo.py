"""`vla-ros demo` (what `make demo` runs): the shipped model through the whole graph, a few instructions."""
import json
import subprocess

import pytest

from harness import console_script
from vla_ros.commands.demo import task_of, time_limit
from vla_ros.errors import VlaRosError
from vla_ros.rollout import sheet_label
from vla_ros.sim.world import COLOURS


def test_an_instruction_is_judged_by_the_task_it_names():
    assert task_of("Now go to the BLUE block", COLOURS) == "reach:blue"
    assert task_of("could you put the red box into the tray", COLOURS) == "pick_place:red:tray"
    assert task_of("stack the green cube on the blue one", COLOURS) == "stack:green:blue"
    assert task_of("lift the red cube", COLOURS) == "pick:red"
    assert time_limit("reach:blue") < time_limit("pick:red") == time_limit("stack:green:blue")
    for bad in ("reach the cube", "go from red to blue", "reach the reddish cube", "put the red and blue in the tray"):
        with pytest.raises(VlaRosError, match="cube colours"):
            task_of(bad, COLOURS)
    refused = subprocess.run([console_script("vla-ros"), "demo", "--instruction", "wave"], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "names no cube colours" in refused.stderr


def test_the_demo_runs_end_to_end_reports_each_instruction_and_writes_its_pictures(ros, tmp_path):
    out = tmp_path / "demo"
    instructions = ["reach the red cube", "tap the blue cube"]
    demo = ros.start([console_script("vla-ros"), "demo", *(a for i in instructions for a in ("--instruction", i)),
                      "--out", str(out)], name="vla-ros-demo")
    assert demo.popen.wait(timeout=600) == 0, demo.output()
    report = json.loads((out / "demo.json").read_text())
    assert [(e["instruction"], e["task"]) for e in report["episodes"]] == [
        ("reach the red cube", "reach:red"), ("tap the blue cube", "reach:blue")]
    assert report["successes"] >= 1, json.dumps(report, indent=1)
    output = demo.output()
    assert all(i in output for i in instructions) and "episodes did what they were told" in output
    for picture in ("demo_sheet.png", "demo_tracking.png"):
        data = (out / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, picture


def test_sheet_rows_name_their_instruction_first_and_their_outcome_last():
    labels = [sheet_label(2, "move over to the green cube now", t, False, i, 3) for i, t in enumerate([0.0, 1.5, 3.0])]
    assert labels == ["2. move over to the green cub~", "t=1.5s", "t=3.0s missed"]
    assert sheet_label(1, "reach the red cube", 2.0, True, 1, 2) == "t=2.0s reached"
