"""Survey of public vendor robot descriptions: `embodiment init`, `check`, then one simulated episode.

Each description comes from a PyPI package (installed with the test extra); each is drafted with
`vla-ros embodiment init` (URDF or xacro file), validated with `vla-ros embodiment check`, and
brought up with `vla-ros sim CONFIG --episodes 1` (the scripted reach expert where it has an arm).
Writes per robot: init ok, check ok, sim came up, reach success and the seconds each step took,
as JSON and as a PNG table. Run with `vla-ros bench vendors [--only NAME ...] [--json OUT]`.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vla_ros.embodiment import load_embodiment
from vla_ros.terminal import console as make_console

VLA_ROS = str(Path(sys.executable).parent / "vla-ros")


@dataclass(frozen=True)
class Vendor:
    """One description: its PyPI distribution, the file in it, xacro arguments, and what is odd about it."""

    name: str
    distribution: str
    path: str  # inside the distribution's files
    quirk: str
    xacro_args: tuple[str, ...] = ()
    model_folder: bool = False  # copy the file and its meshes into a plain folder (pybullet-style layout)


ROBOTS = "cmeel.prefix/share/example-robot-data/robots"
SURVEY = (
    Vendor("stretch_se3", "hello-robot-stretch-urdf",
           "stretch_urdf/SE3/xacro/stretch_description_SE3_eoa_wrist_dw3_tool_sg3.xacro",
           "xacro with $(arg) (use_nominal_extrinsics); ./meshes relative to the folder above the xacro file; "
           "finger joints without a velocity limit; mobile base",
           xacro_args=("use_nominal_extrinsics:=true",)),
    Vendor("stretch_re2", "hello-robot-stretch-urdf",
           "stretch_urdf/RE2V0/xacro/stretch_description_RE2V0_tool_stretch_gripper.xacro",
           "xacro; ./meshes relative to the folder above the xacro file; mobile base"),
    Vendor("stretch_se3_urdf", "hello-robot-stretch-urdf",
           "stretch_urdf/SE3/stretch_description_SE3_eoa_wrist_dw3_tool_sg3.urdf",
           "expanded URDF whose finger joints have no velocity limit"),
    Vendor("jvrc1", "jvrc-description", "jvrc_description/urdf/jvrc1.urdf",
           "humanoid with legs; package:// meshes (.dae) in the package folder"),
    Vendor("upkie", "upkie-description", "upkie_description/urdf/upkie.urdf",
           "wheel-legged biped; <limit> without lower/upper on its wheels"),
    Vendor("upkie_model_folder", "upkie-description", "upkie_description/urdf/upkie.urdf",
           "package://upkie_description/meshes/... with the file copied into a folder not named after the package "
           "(pybullet-style model folder)", model_folder=True),
    Vendor("fingerpro", "robot-properties-fingers", "robot_properties_fingers/urdf/pro/fingerpro.urdf",
           "3-joint finger, no gripper; package:// meshes"),
    Vendor("ur5e_airo", "airo-models", "airo_models/arms/ur5e/ur5e.urdf",
           "attributes with an undeclared namespace prefix (drake:acceleration); relative meshes"),
    Vendor("centauro", "example-robot-data", f"{ROBOTS}/centauro_description/urdf/centauro.urdf",
           "centaur: four wheeled legs and two arms; <limit> without lower/upper"),
    Vendor("tiago", "example-robot-data", f"{ROBOTS}/tiago_description/robots/tiago.urdf",
           "mobile manipulator (differential base, torso, head)"),
    Vendor("panda", "example-robot-data", f"{ROBOTS}/panda_description/urdf/panda.urdf",
           "arm with a mimic-finger gripper"),
    Vendor("xarm7", "example-robot-data", f"{ROBOTS}/xarm_description/urdf/xarm7.urdf", "7-DoF arm, no gripper"),
    Vendor("so100", "example-robot-data", f"{ROBOTS}/so_arm_description/urdf/so100.urdf",
           "5-DoF low-cost arm with a jaw gripper (LeRobot's SO-100)"),
    Vendor("g1", "example-robot-data", f"{ROBOTS}/g1_description/urdf/g1_29dof_with_hand_rev_1_0.urdf",
           "humanoid with legs, a 3-joint waist and two 7-joint hands"),
    Vendor("pr2", "example-robot-data", f"{ROBOTS}/pr2_description/urdf/pr2.urdf",
           "two 7-DoF arms on a prismatic torso over a caster base"),
    Vendor("baxter", "example-robot-data", f"{ROBOTS}/baxter_description/urdf/baxter.urdf",
           "two 7-DoF arms on a fixed pedestal"),
)


def source_file(vendor: Vendor, workdir: Path) -> Path:
    """The description's file; for a model-folder case, a copy laid out as pybullet-style folders are."""
    try:
        distribution = importlib.metadata.distribution(vendor.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{vendor.distribution} is not installed (the test extra installs it)") from None
    path = Path(distribution.locate_file(vendor.path))
    if not vendor.model_folder:
        return path
    package_root = path.parents[1]  # <package>/urdf/robot.urdf
    folder = workdir / f"{vendor.name}_model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(package_root / "meshes", folder / "meshes")
    shutil.copy(path, folder / path.name)
    return folder / path.name


def run(argv: list[str], timeout_s: float) -> tuple[bool, float, str]:
    """(exit status 0, seconds, the last lines of its output) of a `vla-ros` command."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        ok, output = done.returncode == 0, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        ok, output = False, f"timed out after {timeout_s:g} s"
    return ok, time.perf_counter() - start, "\n".join(output.strip().splitlines()[-3:])


def survey_one(vendor: Vendor, workdir: Path, seconds: float) -> dict:
    result = {"robot": vendor.name, "distribution": vendor.distribution, "file": vendor.path, "quirk": vendor.quirk,
              "init": False, "check": False, "sim_up": False, "reach": None}
    try:
        source = source_file(vendor, workdir)
    except FileNotFoundError as error:
        return {**result, "detail": str(error)}
    config = workdir / f"{vendor.name}.yaml"
    xacro = [item for arg in vendor.xacro_args for item in ("--xacro-arg", arg)]
    result["init"], result["init_s"], detail = run(
        [VLA_ROS, "embodiment", "init", str(source), *xacro, "-o", str(config), "--force"], 300)
    if not result["init"]:
        return {**result, "detail": detail}
    result["check"], result["check_s"], detail = run([VLA_ROS, "embodiment", "check", str(config)], 300)
    if not result["check"]:
        return {**result, "detail": detail}
    outcome = workdir / f"{vendor.name}-sim.json"
    ok, result["sim_s"], detail = run([VLA_ROS, "sim", str(config), "--episodes", "1", "--seconds", str(seconds),
                                       "--json", str(outcome)], 240 + 3 * seconds)
    result["sim_up"] = ok and outcome.is_file()
    result["has_arm"] = any(g.kind == "arm" for g in load_embodiment(config).commanded_groups)
    if result["sim_up"] and result["has_arm"]:
        episode = json.loads(outcome.read_text())["results"][0]
        result["reach"] = bool(episode["success"])
        result["reach_detail"] = episode.get("detail", "")
    result["detail"] = detail
    return result


def plot(report: dict, path: Path) -> None:
    """A table of outcomes: one row per robot, green/red cells, seconds per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["robots"]
    columns = ["robot", "package", "init", "check", "sim up", "reach", "init+check [s]", "sim [s]"]

    def mark(value) -> str:
        return "-" if value is None else ("yes" if value else "NO")  # "-": not reached (or no arm)

    cells, colours = [], []
    for row in rows:
        flags = [mark(row["init"]), mark(row["check"]), mark(row["sim_up"]), mark(row["reach"])]
        cells.append([row["robot"], row["distribution"], *flags,
                      f"{row.get('init_s', 0) + row.get('check_s', 0):.1f}", f"{row.get('sim_s', 0):.1f}"])
        colours.append(["white", "white"] + [{"yes": "#b7e4b0", "NO": "#f4b6b0", "-": "#eeeeee"}[f] for f in flags]
                       + ["white", "white"])
    figure, axes = plt.subplots(figsize=(12, 0.45 * len(rows) + 1.2))
    axes.axis("off")
    table = axes.table(cellText=cells, cellColours=colours, colLabels=columns, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.4)
    table.auto_set_column_width(list(range(len(columns))))
    totals = {key: sum(bool(r[key]) for r in rows) for key in ("init", "check", "sim_up", "reach")}
    arms = sum(bool(r.get("has_arm")) for r in rows)
    axes.set_title(f"vendor descriptions: init {totals['init']}/{len(rows)}, check {totals['check']}/{len(rows)}, "
                   f"sim up {totals['sim_up']}/{len(rows)}, reach success {totals['reach']} of the {arms} with an arm")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="vla-ros bench vendors", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[v.name for v in SURVEY], help="survey these robots only")
    parser.add_argument("--seconds", type=float, default=15.0, help="sim time limit of the episode (default 15)")
    parser.add_argument("--json", type=Path, default=Path("bench_results/vendors.json"),
                        help="where to write the results (the PNG goes beside it)")
    args = parser.parse_args(argv)
    console = make_console()
    os.environ.setdefault("MUJOCO_GL", "egl")
    workdir = Path(tempfile.mkdtemp(prefix="vla_ros-vendors-"))
    report = {"benchmark": "vendors", "robots": []}
    for vendor in SURVEY:
        if args.only and vendor.name not in args.only:
            continue
        result = survey_one(vendor, workdir, args.seconds)
        report["robots"].append(result)
        flags = " ".join(f"{key}={'-' if result[key] is None else result[key]}"
                         for key in ("init", "check", "sim_up", "reach"))
        detail = re.sub(r"\s+", " ", result.get("reach_detail") or result.get("detail", ""))[:100]
        console.print(f"{vendor.name} ({vendor.distribution}): {flags}  [{detail}]", markup=False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    png = args.json.with_suffix(".png")
    plot(report, png)
    console.print(f"wrote {args.json} and {png} (configs in {workdir})")
    return report


if __name__ == "__main__":
    main()
