"""Episodes as rosbag2 bags (MCAP storage, zstd chunks): written with `rosbags`, no ROS needed.

A bag holds the standard topics (docs/architecture.md, "Formats"), so `ros2 bag info` and Foxglove
open it, and training reads it back:

| topic | type | what |
|---|---|---|
| `joint_states` | sensor_msgs/JointState | every movable joint, each control period |
| `camera/<name>/image_raw` | sensor_msgs/Image rgb8 | each camera at its rate |
| `joint_commands` | sensor_msgs/JointState | the commanded targets (q*, qd*) of the layout's joints |
| `cmd_vel` | geometry_msgs/Twist | the commanded base velocity (mobile bases) |
| `odom` | nav_msgs/Odometry | the base's velocity in its frame (mobile bases) |
| `vla/instruction` | std_msgs/String | the instruction, when it is given |
| `vla/correction` | std_msgs/String | language corrections given during the episode (recorder_node) |
| `vla/intervention` | std_msgs/Bool | true when a person takes over, false when they hand back (recorder_node) |
| `sim/objects` | visualization_msgs/MarkerArray | where the objects are, when something reports them (recorder_node) |
| `vla/outcome` | std_msgs/String | JSON outcome label, at the end |

The outcome and what the episode was (embodiment, task, seed) are also in metadata.yaml's
custom_data, so a dataset can be filtered without opening the MCAP files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from vla_ros.errors import VlaRosError

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types
JOINT_STATES, JOINT_COMMANDS, INSTRUCTION, OUTCOME = "joint_states", "joint_commands", "vla/instruction", "vla/outcome"
CORRECTION, INTERVENTION, OBJECTS = "vla/correction", "vla/intervention", "sim/objects"
CMD_VEL, ODOM = "cmd_vel", "odom"
BAG_VERSION = 9


class BagError(VlaRosError):
    """A bag that cannot be written or read as an episode."""


def _stamp(seconds: float):
    nanoseconds = int(round(seconds * 1e9))
    return T["builtin_interfaces/msg/Time"](sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def _header(seconds: float, frame_id: str = ""):
    return T["std_msgs/msg/Header"](stamp=_stamp(seconds), frame_id=frame_id)


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _vector3(x: float = 0.0, y: float = 0.0, z: float = 0.0):
    return T["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))


class EpisodeWriter:
    """Writes one episode; times are [s] on the episode's clock (stamps and bag times alike).

    `start` [s] is added to every time, so a bag's stamps can be wall-clock like a live recording.
    """

    def __init__(self, path: str | Path, cameras: dict[str, str], base: bool, info: dict[str, str], start: float = 0.0):
        self.path = Path(path)
        self.start = start
        try:
            self.writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            for key, value in info.items():
                self.writer.set_custom_data(key, str(value))
            self.writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f"cannot write a bag at {self.path}: {error}") from None
        joint_state = "sensor_msgs/msg/JointState"
        self.connections = {
            JOINT_STATES: self._add(JOINT_STATES, joint_state),
            JOINT_COMMANDS: self._add(JOINT_COMMANDS, joint_state),
            INSTRUCTION: self._add(INSTRUCTION, "std_msgs/msg/String"),
            OUTCOME: self._add(OUTCOME, "std_msgs/msg/String"),
        }
        self.camera_topics = dict(cameras)
        for topic in cameras.values():
            self.connections[topic] = self._add(topic, "sensor_msgs/msg/Image")
        if base:
            self.connections[CMD_VEL] = self._add(CMD_VEL, "geometry_msgs/msg/Twist")
            self.connections[ODOM] = self._add(ODOM, "nav_msgs/msg/Odometry")
        self.outcome: dict | None = None

    def _add(self, topic: str, msgtype: str):
        return self.writer.add_connection(topic, msgtype, typestore=TYPESTORE)

    def _write(self, topic: str, seconds: float, msg, msgtype: str) -> None:
        data = TYPESTORE.serialize_cdr(msg, msgtype)
        self.writer.write(self.connections[topic], int(round((self.start + seconds) * 1e9)), data)

    def joint_state(self, seconds: float, names, positions, velocities=(), efforts=(),
                    topic: str = JOINT_STATES) -> None:
        msg = T["sensor_msgs/msg/JointState"](
            header=_header(self.start + seconds), name=list(names),
            position=np.asarray(positions, dtype=np.float64), velocity=np.asarray(velocities, dtype=np.float64),
            effort=np.asarray(efforts, dtype=np.float64))
        self._write(topic, seconds, msg, "sensor_msgs/msg/JointState")

    def commands(self, seconds: float, names, positions, velocities) -> None:
        self.joint_state(seconds, names, positions, velocities, topic=JOINT_COMMANDS)

    def image(self, camera: str, seconds: float, rgb: np.ndarray, frame_id: str) -> None:
        height, width, _ = rgb.shape
        msg = T["sensor_msgs/msg/Image"](
            header=_header(self.start + seconds, frame_id), height=height, width=width, encoding="rgb8",
            is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))
        self._write(self.camera_topics[camera], seconds, msg, "sensor_msgs/msg/Image")

    def instruction(self, seconds: float, text: str) -> None:
        self._write(INSTRUCTION, seconds, T["std_msgs/msg/String"](data=text), "std_msgs/msg/String")

    def correction(self, seconds: float, text: str) -> None:
        if CORRECTION not in self.connections:  # most episodes have none: no empty topic in the bag
            self.connections[CORRECTION] = self._add(CORRECTION, "std_msgs/msg/String")
        self._write(CORRECTION, seconds, T["std_msgs/msg/String"](data=text), "std_msgs/msg/String")

    def intervention(self, seconds: float, active: bool) -> None:
        """A person takes over (True) or hands back (False)."""
        if INTERVENTION not in self.connections:
            self.connections[INTERVENTION] = self._add(INTERVENTION, "std_msgs/msg/Bool")
        self._write(INTERVENTION, seconds, T["std_msgs/msg/Bool"](data=bool(active)), "std_msgs/msg/Bool")

    def serialized(self, topic: str, msgtype: str, seconds: float, data: bytes) -> None:
        """A message already in CDR (as rclpy serializes it), e.g. sim/objects' MarkerArray."""
        if topic not in self.connections:
            self.connections[topic] = self._add(topic, msgtype)
        self.writer.write(self.connections[topic], int(round((self.start + seconds) * 1e9)), data)

    def base(self, seconds: float, commanded: np.ndarray, measured: np.ndarray, frame_id: str) -> None:
        """The commanded (cmd_vel) and measured (odom) base velocities (vx, vy, wz)."""
        self.base_command(seconds, commanded)
        self.base_velocity(seconds, measured, frame_id)

    def base_command(self, seconds: float, commanded: np.ndarray) -> None:
        """The commanded base velocity (vx, vy, wz), as cmd_vel."""
        twist = T["geometry_msgs/msg/Twist"](linear=_vector3(commanded[0], commanded[1]),
                                             angular=_vector3(z=commanded[2]))
        self._write(CMD_VEL, seconds, twist, "geometry_msgs/msg/Twist")

    def base_velocity(self, seconds: float, measured: np.ndarray, frame_id: str) -> None:
        """The measured base velocity (vx, vy, wz) in its frame, as odom."""
        odom = T["nav_msgs/msg/Odometry"](
            header=_header(self.start + seconds, "odom"), child_frame_id=frame_id,
            pose=T["geometry_msgs/msg/PoseWithCovariance"](
                pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                                 orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                                               w=1.0)),
                covariance=np.zeros(36)),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](linear=_vector3(measured[0], measured[1]),
                                                   angular=_vector3(z=measured[2])),
                covariance=np.zeros(36)))
        self._write(ODOM, seconds, odom, "nav_msgs/msg/Odometry")

    def finish(self, seconds: float, outcome: dict) -> None:
        """Write the outcome label (JSON: success, ...) and close the bag."""
        self.outcome = outcome
        self._write(OUTCOME, seconds, T["std_msgs/msg/String"](data=json.dumps(outcome)), "std_msgs/msg/String")
        for key, value in outcome.items():
            self.writer.set_custom_data(f"outcome.{key}", json.dumps(value))
        self.writer.close()

    def abort(self) -> None:
        """Close without an outcome (the bag stays readable, marked as unfinished)."""
        self.writer.close()


@dataclass
class Series:
    """Stamped vectors: times (N,) [s], values (N, K), `names` of the K columns."""

    times: np.ndarray
    values: np.ndarray
    names: tuple[str, ...] = ()


@dataclass
class Episode:
    """What a bag holds, as arrays. Times are message stamps [s] relative to the first joint state."""

    path: Path
    info: dict[str, str]
    joint_states: Series
    commands: Series
    images: dict[str, tuple[np.ndarray, np.ndarray]]  # camera topic -> (times (M,), frames (M, H, W, 3) uint8)
    instructions: list[tuple[float, str]]
    outcome: dict | None
    corrections: list[tuple[float, str]] = field(default_factory=list)
    interventions: list[tuple[float, float]] = field(default_factory=list)  # (start, end) [s] a person drove
    objects: dict[str, Series] = field(default_factory=dict)  # red_cube, tray... -> (N, 3) [m] in the root frame
    base_commands: Series | None = None
    base_velocity: Series | None = None
    start: float = 0.0
    frame_ids: dict[str, str] = field(default_factory=dict)

    def intervening(self, times: np.ndarray) -> np.ndarray:
        """(N,) bool: whether a person drove at each of `times` [s]."""
        times = np.asarray(times, dtype=float)
        driven = np.zeros(times.shape, bool)
        for start, end in self.interventions:
            driven |= (times >= start) & (times < end)
        return driven

    def instruction_at(self, seconds: float) -> str | None:
        """The newest instruction given at or before `seconds`."""
        current = None
        for stamp, text in self.instructions:
            if stamp <= seconds + 1e-9:
                current = text
        return current


def read_episode(path: str | Path, cameras: bool = True) -> Episode:
    """Read a bag written by EpisodeWriter (or any bag with these topics); BagError if it can't."""
    path = Path(path)
    states, commands, base_commands, base_velocity = [], [], [], []
    images: dict[str, tuple[list, list]] = {}
    frame_ids: dict[str, str] = {}
    instructions, corrections, switches, outcome = [], [], [], None
    objects: dict[str, list] = {}
    state_names = command_names = ()
    try:
        with Reader(path) as reader:
            wanted = [c for c in reader.connections if cameras or c.msgtype != "sensor_msgs/msg/Image"]
            for connection, timestamp, raw in reader.messages(connections=wanted):
                msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                topic = connection.topic
                if topic == JOINT_STATES:
                    state_names = tuple(msg.name)
                    states.append((_seconds(msg.header.stamp), msg.position))
                elif topic == JOINT_COMMANDS:
                    command_names = tuple(msg.name)
                    commands.append((_seconds(msg.header.stamp), msg.position))
                elif connection.msgtype == "sensor_msgs/msg/Image":
                    times, frames = images.setdefault(topic, ([], []))
                    times.append(_seconds(msg.header.stamp))
                    frames.append(_rgb(msg, topic))
                    frame_ids[topic] = msg.header.frame_id
                elif topic == INSTRUCTION:
                    instructions.append((timestamp * 1e-9, msg.data))
                elif topic == CORRECTION:
                    corrections.append((timestamp * 1e-9, msg.data))
                elif topic == INTERVENTION:
                    switches.append((timestamp * 1e-9, bool(msg.data)))
                elif topic == OBJECTS:
                    for marker in msg.markers:
                        position = marker.pose.position
                        objects.setdefault(marker.text, []).append((_seconds(marker.header.stamp),
                                                                    (position.x, position.y, position.z)))
                elif topic == OUTCOME:
                    outcome = json.loads(msg.data)
                elif topic == CMD_VEL:
                    base_commands.append((timestamp * 1e-9, (msg.linear.x, msg.linear.y, msg.angular.z)))
                elif topic == ODOM:
                    twist = msg.twist.twist
                    base_velocity.append((_seconds(msg.header.stamp), (twist.linear.x, twist.linear.y,
                                                                       twist.angular.z)))
        info = read_info(path)
    except (ReaderError, OSError, ValueError, KeyError) as error:
        raise BagError(f"{path}: not a readable episode bag: {error}") from None
    if not states or not commands:
        raise BagError(f"{path}: an episode needs {JOINT_STATES} and {JOINT_COMMANDS} messages "
                       f"(found {len(states)} and {len(commands)})")
    start = states[0][0]
    episode = Episode(
        path=path, info=info,
        joint_states=_series(states, state_names, start),
        commands=_series(commands, command_names, start),
        images={topic: (np.array(times) - start, np.stack(frames)) for topic, (times, frames) in images.items()},
        instructions=[(t - start, text) for t, text in instructions],
        outcome=outcome, corrections=[(t - start, text) for t, text in corrections],
        interventions=segments([(t - start, on) for t, on in switches], states[-1][0] - start),
        objects={name: _series(entries, ("x", "y", "z"), start) for name, entries in objects.items()},
        start=start, frame_ids=frame_ids)
    if base_velocity and base_commands:  # cmd_vel has no header: its bag time is when it was sent
        episode.base_velocity = _series(base_velocity, ("vx", "vy", "wz"), start)
        episode.base_commands = _series(base_commands, ("vx", "vy", "wz"), start)
    return episode


def segments(switches: list[tuple[float, bool]], end: float) -> list[tuple[float, float]]:
    """(start, end) [s] of each stretch a person drove, from the takeover and hand-back times.

    A takeover not handed back within the episode lasts to `end`; repeats change nothing.
    """
    found, since = [], None
    for seconds, active in sorted(switches, key=lambda switch: switch[0]):
        if active and since is None:
            since = seconds
        elif not active and since is not None:
            found.append((since, seconds))
            since = None
    if since is not None:
        found.append((since, max(since, end)))
    return found


def read_info(path: Path) -> dict[str, str]:
    """The custom_data of a bag's metadata.yaml (what the episode was, its outcome)."""
    with (Path(path) / "metadata.yaml").open() as file:
        metadata = yaml.safe_load(file)["rosbag2_bagfile_information"]
    return {str(k): str(v) for k, v in (metadata.get("custom_data") or {}).items()}


def _series(entries: list[tuple[float, object]], names: tuple[str, ...], start: float) -> Series:
    times = np.array([t for t, _ in entries]) - start
    return Series(times, np.array([np.asarray(v, dtype=np.float64) for _, v in entries]), names)


def _rgb(msg, topic: str) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise BagError(f"{topic}: image encoding {msg.encoding!r} is not rgb8 or bgr8")
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return pixels[..., ::-1].copy() if msg.encoding == "bgr8" else pixels.copy()


def find_bags(folders: list[str | Path]) -> list[Path]:
    """Every bag (a directory with metadata.yaml) in or under `folders`, sorted; links to bags are followed."""
    bags = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise BagError(f"no such dataset directory: {folder}")
        if (folder / "metadata.yaml").exists():
            bags.append(folder)
            continue
        found, seen = [], set()
        for root, directories, files in os.walk(folder, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:  # a link back up the tree
                directories.clear()
                continue
            seen.add(real)
            directories[:] = [d for d in directories if d != ".cache"]
            if "metadata.yaml" in files:
                found.append(Path(root))
        bags.extend(sorted(found))
    if not bags:
        raise BagError(f"no bags (directories with metadata.yaml) in {', '.join(map(str, folders))}")
    return bags
