"""`vla-ros doctor`: check each thing the stack needs and say how to fix what fails.

Every check runs even when an earlier one failed, so one run shows everything that is wrong.
Heavy imports (rclpy, torch, mujoco) happen inside the checks: a missing one is a finding, not a crash.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vla_ros import process, resources

ROS_FIX = "run `make setup` (pip-only machine) or `source /opt/ros/<distro>/setup.bash` (ROS install)"
RMW_FIX = "install the ROS middleware: `.venv/bin/pip install ros-rmw-fastrtps-cpp` (`make setup` does it)"
MESSAGE_PACKAGES = (
    "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs",
    "diagnostic_msgs", "std_srvs", "rosgraph_msgs", "builtin_interfaces",
)
ROUND_TRIP_TIMEOUT_S = 20.0
ROUND_TRIPS = 20


@dataclass(frozen=True)
class Result:
    """The outcome of one check: `detail` says what was found, `fix` what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


class Failed(Exception):
    """Raised by a check that knows the specific fix for what it found."""

    def __init__(self, detail: str, fix: str):
        super().__init__(detail)
        self.fix = fix


@dataclass(frozen=True)
class Check:
    """A named check: `run` returns what it found or raises; `fix` is said when it fails."""

    name: str
    run: Callable[[], str]
    fix: str

    def __call__(self) -> Result:
        try:
            return Result(self.name, True, self.run())
        except Failed as failure:
            return Result(self.name, False, str(failure), failure.fix)
        except Exception as error:  # noqa: BLE001 - any failure of a check is the finding it reports
            return Result(self.name, False, f"{type(error).__name__}: {_first_line(error)}", self.fix)


def _first_line(error: BaseException) -> str:
    """The gist of an error; ImportErrors of C extensions append a paragraph of boilerplate."""
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


CHECKS: list[Check] = []


def check(name: str, fix: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register a check: a function that returns what it found, or raises when something is wrong."""

    def register(run: Callable[[], str]) -> Callable[[], str]:
        CHECKS.append(Check(name, run, fix))
        return run

    return register


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(no package metadata)"


@check("python", fix="use Python 3.10 or newer")
def _python() -> str:
    if sys.version_info < (3, 10):
        raise RuntimeError(f"Python {sys.version.split()[0]} is too old")
    return f"{sys.version.split()[0]} at {sys.executable}"


@check("rclpy and RMW", fix=ROS_FIX)
def _rclpy() -> str:
    try:
        import rclpy.utilities
    except ImportError as error:
        if "librmw_" in str(error):
            raise Failed(f"rclpy cannot load its middleware: {_first_line(error)}", RMW_FIX) from error
        raise
    distro = os.environ.get("ROS_DISTRO", "unset: PyPI wheels")
    return (
        f"rclpy {_version('rclpy')}, RMW {rclpy.utilities.get_rmw_implementation_identifier()}, "
        f"ROS_DISTRO {distro}"
    )


@check("ROS messages", fix=ROS_FIX)
def _messages() -> str:
    for package in MESSAGE_PACKAGES:
        importlib.import_module(f"{package}.msg" if package != "std_srvs" else "std_srvs.srv")
    return ", ".join(MESSAGE_PACKAGES)


@check(
    "DDS round trip",
    fix="check that loopback multicast/UDP is allowed and both processes share ROS_DOMAIN_ID "
    "and ROS_AUTOMATIC_DISCOVERY_RANGE",
)
def _round_trip() -> str:
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String
    except ImportError as error:
        raise Failed(f"needs rclpy and std_msgs: {_first_line(error)}", "fix the checks above first") from error

    nonce = uuid.uuid4().hex[:12]
    ping, pong = f"vla_ros_doctor_{nonce}/ping", f"vla_ros_doctor_{nonce}/pong"
    echo = process.spawn(
        [sys.executable, "-m", "vla_ros.nodes.echo_node", "--ros-args", "-r", f"ping:={ping}",
         "-r", f"pong:={pong}", "-r", f"__node:=vla_ros_echo_{nonce}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"vla_ros_doctor_{nonce}", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        replies: dict[str, float] = {}
        node.create_subscription(
            String, pong, lambda msg: replies.setdefault(msg.data, time.monotonic()), 10
        )
        publisher = node.create_publisher(String, ping, 10)
        start = time.monotonic()
        sent: dict[str, float] = {}
        round_trips_ms: list[float] = []
        while len(round_trips_ms) < ROUND_TRIPS:
            if time.monotonic() - start > ROUND_TRIP_TIMEOUT_S:
                raise TimeoutError(
                    f"{len(round_trips_ms)} of {ROUND_TRIPS} replies from the echo process "
                    f"within {ROUND_TRIP_TIMEOUT_S:.0f} s"
                )
            if echo.poll() is not None:
                output = echo.stdout.read().strip().splitlines()[-3:]
                raise RuntimeError(f"echo process exited with {echo.returncode}: {' | '.join(output)}")
            payload = f"{nonce}:{len(sent)}"
            sent[payload] = time.monotonic()
            publisher.publish(String(data=payload))
            deadline = time.monotonic() + 0.1
            while payload not in replies and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=deadline - time.monotonic())
            if payload in replies:
                round_trips_ms.append((replies[payload] - sent[payload]) * 1e3)
        first_reply_s = min(replies.values()) - start
        round_trips_ms.sort()
        domain = os.environ.get("ROS_DOMAIN_ID", "0")
        scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
        return (
            f"2 processes, domain {domain}, discovery {scope}: first reply after "
            f"{first_reply_s:.2f} s, round trip p50 {round_trips_ms[len(round_trips_ms) // 2]:.2f} ms"
        )
    finally:
        context.try_shutdown()
        process.stop(echo)


@check("torch", fix="install the CPU build first: `.venv/bin/pip install torch==2.13.0` (`make setup`)")
def _torch() -> str:
    import torch

    product = torch.ones(64, 64) @ torch.ones(64, 64)
    if float(product[0, 0]) != 64.0:
        raise RuntimeError(f"a 64x64 matmul of ones gave {float(product[0, 0])}, not 64")
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    return f"torch {torch.__version__}, device {device}"


@check(
    "MuJoCo headless render",
    fix="`.venv/bin/pip install mujoco` (`make setup` does it); for headless rendering "
    "`apt-get install -y libegl1 libgl1-mesa-dri libegl-mesa0` and `export MUJOCO_GL=egl`",
)
def _mujoco() -> str:
    import mujoco  # vla_ros chose EGL unless MUJOCO_GL says otherwise

    model = mujoco.MjModel.from_xml_string(
        """<mujoco><worldbody><light pos="0 0 3"/>
        <geom type="box" size=".2 .2 .2" rgba="1 0 0 1"/>
        <camera name="eye" pos="0 -1.2 0" xyaxes="1 0 0 0 0 1"/></worldbody></mujoco>"""
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    start = time.perf_counter()
    with mujoco.Renderer(model, 64, 64) as renderer:
        renderer.update_scene(data, camera="eye")
        image = renderer.render()
    render_ms = (time.perf_counter() - start) * 1e3
    red = (image[..., 0].astype(int) > 2 * image[..., 1].astype(int) + 20).mean()
    if red < 0.05:
        raise RuntimeError(f"the rendered frame does not show the red test cube ({red:.0%} red pixels)")
    return (
        f"mujoco {mujoco.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}, "
        f"64x64 frame in {render_ms:.0f} ms (context included), cube on {red:.0%} of pixels"
    )


@check("share directory", fix="reinstall: `make setup`, or `colcon build` and source install/setup.bash")
def _share() -> str:
    share = resources.share_dir()
    missing = [name for name in ("package.xml", "launch", "config", "urdf") if not (share / name).exists()]
    if missing:
        raise RuntimeError(f"{share} lacks {', '.join(missing)}")
    from vla_ros.embodiment import load_embodiment

    embodiments = sorted(path.stem for path in (share / "config").glob("*.yaml"))
    for name in embodiments:
        load_embodiment(name)
    counts = ", ".join(
        f"{name}/ {sum(1 for p in (share / name).rglob('*') if p.is_file())} files"
        for name in ("launch", "config", "urdf")
    )
    return f"{share}: {counts}; embodiments {', '.join(embodiments)} valid"


@check("ros2 run layout", fix="reinstall: `make setup`, or `colcon build` and source install/setup.bash")
def _layout() -> str:
    prefix = resources.installed_prefix()
    if prefix is None:
        raise RuntimeError(
            "no ament index entry for vla_ros under "
            + ", ".join(str(p) for p in resources.install_prefixes())
        )
    executables = sorted(
        entry.name
        for entry in importlib.metadata.distribution("vla_ros").entry_points
        if entry.group == "console_scripts" and entry.name != "vla-ros"
    )
    broken = [
        name for name in executables
        if not os.access(prefix / "lib" / "vla_ros" / name, os.X_OK)
        or not os.access(prefix / "bin" / name, os.X_OK)
    ]
    if broken:
        raise RuntimeError(f"under {prefix}, lib/vla_ros or bin/ lacks: {', '.join(broken)}")
    in_ament_path = str(prefix) in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    note = "" if in_ament_path else " (add it to AMENT_PREFIX_PATH for `ros2 run`/`ros2 launch`)"
    return f"{prefix}/lib/vla_ros: {', '.join(executables)}{note}"


@check("LeRobot environment (optional)", fix="`make lerobot-setup` rebuilds .venv-lerobot")
def _lerobot() -> str:
    """The environment the `lerobot` backend serves LeRobot policies from; only needed for them."""
    from vla_ros.policy.lerobot import PYTHON_VARIABLE

    python = Path(os.environ.get(PYTHON_VARIABLE) or ".venv-lerobot/bin/python")
    if not python.exists():
        return (f"not set up (only the lerobot backend needs it): `make lerobot-setup`, then "
                f"export {PYTHON_VARIABLE}=$PWD/.venv-lerobot/bin/python")
    versions = subprocess.run(
        [str(python), "-c", "import lerobot, torch, torchvision, vla_ros; "
                            "print(lerobot.__version__, torch.__version__, torchvision.__version__)"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if versions.returncode != 0:
        raise RuntimeError(f"{python}: {(versions.stderr.strip().splitlines() or ['no output'])[-1]}")
    lerobot, torch, torchvision = versions.stdout.split()
    note = "" if os.environ.get(PYTHON_VARIABLE) else f" (export {PYTHON_VARIABLE}={python.absolute()} for the " \
                                                     f"lerobot backend)"
    return f"{python}: lerobot {lerobot}, torch {torch}, torchvision {torchvision}{note}"


def run_checks() -> list[Result]:
    return [each() for each in CHECKS]


def report(results: list[Result]) -> int:
    """Print the results as a table; return the exit code (0 when every check passed, else 1)."""
    from rich.table import Table

    from vla_ros.terminal import console as make_console

    table = Table(title="vla-ros doctor", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail / fix", overflow="fold")
    for result in results:
        if result.ok:
            table.add_row(result.name, "[green]ok[/]", result.detail)
        else:
            table.add_row(result.name, "[red]FAIL[/]", f"{result.detail}\n[bold]fix:[/] {result.fix}")
    console = make_console()
    console.print(table)
    failed = [result.name for result in results if not result.ok]
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed:[/] {', '.join(failed)}")
        return 1
    console.print(f"[green]all {len(results)} checks passed[/]")
    return 0
