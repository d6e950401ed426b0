"""Training samples from episode bags: one per camera frame, with the chunk of targets that followed.

A sample at frame time t holds every camera's picture at t (resized for the model), the state at
t (joint positions interpolated from joint_states, the base velocity from odom) in the embodiment
layout, the instruction in force at t, and the commanded targets at t + k dt, k = 1..H (held at
the last one past the end): the same timing the policy node uses (ActionChunk.times).

A sample's goal is where the end effector was commanded to at the episode's next keypose: where
the gripper next closes or opens (a grasp, a release), else at the end (hindsight: for a reach,
the cube the instruction named; for a pick and place, first the cube, then the tray), from the
commanded joints by forward kinematics in the robot's root frame, and also seen from the end
effector where the sample's state has it (`tool_goals`: what the wrist camera shows, and 0 where
the gripper is to close). It needs nothing but the bag, so
it works for any robot's recorded episodes. Goals belong to the last instruction: frames taken
under an earlier one (a change of mind, or a finished sub-task) have no goal known from the bag
and are left out.

An episode comes from a bag or from a LeRobot v3.0 dataset (vla_ros.data.lerobot), each a
`Recording`; both are sampled by the same code. Decoding is the slow part, so each episode's samples
are cached as .npz under the dataset's `.cache/`, keyed by its files and the sampling settings; a
changed file or setting misses.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_ros.data.bag import BagError, Episode, find_bags, read_episode, read_info
from vla_ros.data.lerobot import LeRobotError, LeRobotSource, is_lerobot
from vla_ros.embodiment import Embodiment, EmbodimentError, EmbodimentIO, load_embodiment
from vla_ros.embodiment.goals import goals_in_tool, hindsight_goals
from vla_ros.media import resize

CACHE_FORMAT = 3
CAMERA_SKEW_S = 0.02  # frames of different cameras closer than this count as one moment


@dataclass
class EpisodeSamples:
    """N samples of one episode.

    images: camera -> (N, h, w, 3) uint8; states (N, D); actions (N, H, D); goals (N, 3) [m] or None
    (hindsight_goals) in the root frame, tool_goals the same in the acting end effector's frame at each state;
    times (N,) [s] of the frames on the episode's clock (Episode's: from its first joint state).
    """

    embodiment: str
    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    instructions: list[str]
    success: bool
    task: str
    goals: np.ndarray | None = None
    tool_goals: np.ndarray | None = None
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.states)


def episode_samples(episode: Episode, embodiment: Embodiment, horizon: int, dt: float,
                    image_size: tuple[int, int]) -> EpisodeSamples:
    """The samples of one episode for `embodiment`; BagError when the bag lacks what they need."""
    io = EmbodimentIO(embodiment)
    topics = {camera.topic: name for name, camera in embodiment.cameras.items()}
    missing = [topic for topic in topics if topic not in episode.images]
    if missing:
        raise BagError(f"{episode.path}: no images on {', '.join(missing)} (embodiment {embodiment.name})")
    state_columns = _columns(episode.joint_states.names, io.joints, episode.path, "joint_states")
    command_columns = _columns(episode.commands.names, io.joints, episode.path, "joint_commands")
    if io.base is not None and episode.base_velocity is None:
        raise BagError(f"{episode.path}: {embodiment.name} has a base, the bag has no odom / cmd_vel")
    first = next(iter(topics))
    times = episode.images[first][0]
    final = episode.instructions[-1][1] if episode.instructions else None
    keep = [i for i, t in enumerate(times) if final is not None and episode.instruction_at(t) == final
            and all(np.min(np.abs(episode.images[topic][0] - t)) <= CAMERA_SKEW_S for topic in topics)]
    times = times[keep]
    images = {}
    for topic, name in topics.items():
        camera_times, frames = episode.images[topic]
        nearest = [int(np.argmin(np.abs(camera_times - t))) for t in times]
        images[name] = np.stack([resize(frames[i], *image_size) for i in nearest]) if len(nearest) else \
            np.zeros((0, *image_size, 3), np.uint8)
    targets = times[:, None] + dt * np.arange(1, horizon + 1)[None, :]
    positions = _interp(episode.joint_states, state_columns, times)
    base_velocities = _interp(episode.base_velocity, None, times) if io.base else [None] * len(times)
    states = np.stack([io.state(q, v) for q, v in zip(positions, base_velocities)]) if len(times) else \
        np.zeros((0, io.size), np.float32)
    actions = np.zeros((len(times), horizon, io.size), np.float32)
    for i, row in enumerate(targets):
        joints = _interp(episode.commands, command_columns, row)
        base = _interp(episode.base_commands, None, row) if io.base else None
        actions[i] = np.stack([io.state(joints[k], base[k] if base is not None else None) for k in range(horizon)])
    outcome = episode.outcome or {}
    return with_goals(EpisodeSamples(embodiment.name, images, states.astype(np.float32), actions,
                                     [episode.instruction_at(t) for t in times], bool(outcome.get("success", False)),
                                     str(outcome.get("task", episode.info.get("task", ""))), times=times),
                      embodiment)


def with_goals(samples: EpisodeSamples, embodiment: Embodiment) -> EpisodeSamples:
    """`samples` with their hindsight goals in the root frame and in the end effector's frame."""
    found = hindsight_goals(samples.actions, embodiment)
    if found is not None:
        samples.goals, frames = found
        samples.tool_goals = goals_in_tool(samples.goals, samples.states, embodiment, frames)
    return samples


def sample_goals(samples: list[EpisodeSamples], in_tool: bool = False) -> np.ndarray:
    """(total N, 3) [m] every sample's goal, in the end effector's frame at its state when `in_tool`."""
    return np.concatenate([s.tool_goals if in_tool else s.goals for s in samples])


def _columns(names: tuple[str, ...], wanted: tuple[str, ...], path: Path, topic: str) -> np.ndarray:
    absent = [n for n in wanted if n not in names]
    if absent:
        raise BagError(f"{path}: {topic} lacks the joints {', '.join(absent)}")
    return np.array([names.index(n) for n in wanted])


def _interp(series, columns, times) -> np.ndarray:
    """(len(times), K) values of `series` (its `columns`, or all) linearly interpolated, held at the ends."""
    values = series.values if columns is None else series.values[:, columns]
    return np.stack([np.interp(times, series.times, values[:, j]) for j in range(values.shape[1])], axis=1)


@dataclass(frozen=True)
class Recording:
    """One episode to learn from: a bag, or an episode of a LeRobot dataset.

    `files` are what it is read from (the cache key holds their sizes and times), `info` what a
    bag's custom_data says (embodiment, outcome.success), `read` gives the Episode; `embodiment` is
    the one it is read for when that is not the one info names (a LeRobot dataset read for a file).
    """

    name: str
    files: tuple[Path, ...]
    info: dict[str, str]
    cache_dir: Path
    read: Callable[[], Episode]
    embodiment: Embodiment | None = None
    read_meta: Callable[[], Episode] | None = None  # the episode without its images, where that is cheaper

    def meta(self) -> Episode:
        """The episode, without images where the source can leave them out."""
        return (self.read_meta or self.read)()


def bag_recording(bag: Path, cache_dir: Path | None = None) -> Recording:
    """A bag as a Recording, cached beside it (in its dataset's .cache/) unless told where."""
    return Recording(bag.name, tuple(sorted(p for p in bag.iterdir() if p.is_file())), read_info(bag),
                     cache_dir or bag.parent / ".cache", lambda: read_episode(bag),
                     read_meta=lambda: read_episode(bag, cameras=False))


def lerobot_recordings(root: Path, embodiment: Embodiment) -> list[Recording]:
    """Every episode of the LeRobot dataset at `root`, read for `embodiment`."""
    source = LeRobotSource(root, embodiment)
    files = tuple(sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts))
    return [Recording(f"{root.name}-episode-{index:06d}", files, source.info_of(index), root / ".cache",
                      lambda index=index: source.episode(index), embodiment) for index in range(len(source))]


def find_recordings(folders: list[Path], embodiment: str | None = None) -> list[Recording]:
    """The episodes in `folders`: LeRobot datasets (their root given) and bags in or under the rest.

    A LeRobot dataset is read for `embodiment` (a name or file), by default the one its robot_type names.
    """
    recordings, bag_folders = [], []
    for folder in map(Path, folders):
        if not is_lerobot(folder):
            bag_folders.append(folder)
            continue
        robot = embodiment or LeRobotSource.robot_type(folder)
        try:
            loaded = load_embodiment(robot)
        except EmbodimentError as error:
            raise LeRobotError(f"{folder}: its robot_type {robot!r} is not an embodiment vla_ros can load ({error}); "
                               f"pass --embodiment FILE, mapping the dataset's names under lerobot: in it") from None
        recordings += lerobot_recordings(folder, loaded)
    if bag_folders:
        recordings += [bag_recording(bag) for bag in find_bags(bag_folders)]
    return recordings


def cached_samples(recording: Recording, embodiment: Embodiment, horizon: int, dt: float,
                   image_size: tuple[int, int]) -> EpisodeSamples:
    """episode_samples of `recording`, from the cache when its files and the settings are unchanged."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in recording.files]
    key = json.dumps([CACHE_FORMAT, recording.name, stats, embodiment.name, list(EmbodimentIO(embodiment).names),
                      horizon, dt, list(image_size)])
    cache_dir = recording.cache_dir
    path = cache_dir / f"{recording.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return with_goals(EpisodeSamples(
                str(data["embodiment"]), {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("image/")},
                data["states"], data["actions"], [str(s) for s in data["instructions"]], bool(data["success"]),
                str(data["task"]), times=data["times"]), embodiment)
    samples = episode_samples(recording.read(), embodiment, horizon, dt, image_size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, embodiment=samples.embodiment, states=samples.states, actions=samples.actions,
             instructions=np.array(samples.instructions, dtype=str), success=samples.success, task=samples.task,
             times=samples.times,
             **{f"image/{name}": frames for name, frames in samples.images.items()})
    partial.replace(path)
    return samples
