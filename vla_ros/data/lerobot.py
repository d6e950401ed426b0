"""Episode bags <-> LeRobotDataset v3.0, without LeRobot installed (pyarrow and PyAV).

Export (`vla-ros export lerobot`) samples each bag at `fps` with causal alignment: frame f is at
t_f = t_0 + f / fps, where t_0 is the first moment every stream (joint states, commands, each
camera, odom and cmd_vel on a mobile base) has a message; the state, the action and each image
of a frame are the newest messages at or before t_f (a stamp up to STAMP_SLACK_S late still
counts, for stamps rounded on the way). The action is the commanded target (`joint_commands`,
`cmd_vel`), never a later measurement. A frame whose newest image is older than `max_image_age`,
or that comes before the first instruction, is dropped and counted. The frame's task is the
instruction in force at t_f.

The layout is LeRobot's own (LeRobotDataset v3.0, as LeRobot 0.4 writes it):

    meta/info.json       features (names, shapes, dtypes, video info), fps, counts, path templates
    meta/stats.json      min, max, mean, std, count, q01 ... q99 of every feature (images per channel)
    meta/tasks.parquet   task text (the index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, where its rows and video
                         frames are, its own stats, and the vla_ros columns below
    data/chunk-000/file-000.parquet            one row per frame: observation.state, action,
                         timestamp, frame_index, episode_index, index, task_index
    videos/observation.images.<camera>/chunk-000/file-000.mp4   episodes one after another

State and action are float32 vectors in the embodiment layout (their names are the layout's);
images are `observation.images.<camera>` videos; `complementary_info.is_intervention` (LeRobot's
human-in-the-loop name, float32 1 or 0) marks the frames a person drove. What LeRobot has no place
for is kept in the episodes table: `vla_ros/source` (the bag's name), `vla_ros/success`,
`vla_ros/outcome` (the outcome label as JSON), `vla_ros/corrections` (JSON [[seconds from the
episode's first frame, text], ...]), `vla_ros/interventions` (JSON [[start, end], ...] in the same
seconds), `vla_ros/seed`, `vla_ros/dropped_frames`.

Import (`vla-ros train --data DIR`): `LeRobotSource` reads such a dataset (or any LeRobot v3.0
dataset whose names the embodiment file maps, `lerobot:` in its config) back into `Episode`s, so
training samples it exactly as it samples bags.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vla_ros import __version__
from vla_ros.data.bag import Episode, Series, read_episode, read_info, segments
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.config import lerobot_feature_names
from vla_ros.errors import VlaRosError
from vla_ros.media import resize

CODEBASE_VERSION = "v3.0"
STATE, ACTION, IMAGES = "observation.state", "action", "observation.images."
INTERVENTION = "complementary_info.is_intervention"
CHUNKS_SIZE, DATA_FILE_MB, VIDEO_FILE_MB = 1000, 100, 200  # LeRobot's defaults
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAMP_SLACK_S = 1e-6
IMAGE_STATS_STRIDE = 4  # every 4th pixel of every frame in the image statistics
# LeRobot's video settings: AV1 (SVT), 4:2:0, a keyframe every 2 frames, crf 30.
VIDEO_CODECS = {"libsvtav1": ("av1", {"g": "2", "crf": "30"}), "h264": ("h264", {"g": "2", "crf": "23"})}
INDEX_FEATURES = {name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in (
    ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
    ("task_index", "int64"))}


class LeRobotError(VlaRosError):
    """A dataset that cannot be written or read as a LeRobotDataset for this embodiment."""


@dataclass
class Frames:
    """An episode sampled at fps.

    (F,) times [s] on the bag's clock, (F, D) states and actions, camera -> (F, H, W, 3) images,
    F tasks, (F,) whether a person drove, and the frames dropped (reason -> count).
    """

    times: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    images: dict[str, np.ndarray]
    tasks: list[str]
    intervening: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)


def _newest(times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the newest of `times` (sorted) at or before each of `at`; -1 where there is none."""
    return np.searchsorted(times, at + STAMP_SLACK_S, side="right") - 1


def sample_frames(episode: Episode, embodiment: Embodiment, fps: float, max_image_age: float) -> Frames:
    """`episode` on the fps grid with causal alignment (see the module docstring)."""
    io = EmbodimentIO(embodiment)
    topics = {name: camera.topic for name, camera in embodiment.cameras.items()}
    missing = [topic for topic in topics.values() if topic not in episode.images]
    if missing:
        raise LeRobotError(f"{episode.path}: no images on {', '.join(missing)} (embodiment {embodiment.name})")
    state_columns = _columns(episode.joint_states, io.joints, episode.path)
    command_columns = _columns(episode.commands, io.joints, episode.path)
    streams = [episode.joint_states.times, episode.commands.times, *(episode.images[t][0] for t in topics.values())]
    if io.base is not None:
        if episode.base_velocity is None or episode.base_commands is None:
            raise LeRobotError(f"{episode.path}: {embodiment.name} has a base, the bag has no odom / cmd_vel")
        streams += [episode.base_velocity.times, episode.base_commands.times]
    first = max(float(s[0]) for s in streams)
    last = min(float(s[-1]) for s in streams[:2])
    times = first + np.arange(int(np.floor((last - first) * fps + 1e-6)) + 1) / fps
    keep = np.ones(len(times), bool)
    dropped = {"stale image": 0, "no instruction": 0}
    picks = {}
    for name, topic in topics.items():
        picks[name] = _newest(episode.images[topic][0], times)
        stale = times - episode.images[topic][0][picks[name]] > max_image_age + STAMP_SLACK_S
        dropped["stale image"] += int(np.sum(stale & keep))
        keep &= ~stale
    tasks = [episode.instruction_at(t) for t in times]
    untold = np.array([task is None for task in tasks], bool)
    dropped["no instruction"] = int(np.sum(untold & keep))
    keep &= ~untold
    times = times[keep]

    def layout(joints: Series, columns: np.ndarray, base: Series | None) -> np.ndarray:
        """(F, D) vectors in the layout: the newest joint positions and base velocities at each frame."""
        bases = _at(base, times) if io.base else [None] * len(times)
        rows = [io.state(q, v) for q, v in zip(_at(joints, times)[:, columns], bases)]
        return np.stack(rows) if rows else np.zeros((0, io.size), np.float32)

    states = layout(episode.joint_states, state_columns, episode.base_velocity)
    actions = layout(episode.commands, command_columns, episode.base_commands)
    images = {name: episode.images[topics[name]][1][index[keep]] for name, index in picks.items()}
    return Frames(times, states, actions, images, [t for t, k in zip(tasks, keep) if k], episode.intervening(times),
                  dropped)


def _columns(series: Series, wanted: tuple[str, ...], path: Path) -> np.ndarray:
    absent = [n for n in wanted if n not in series.names]
    if absent:
        raise LeRobotError(f"{path}: the bag lacks the joints {', '.join(absent)}")
    return np.array([series.names.index(n) for n in wanted], dtype=int)


def _at(series: Series, times: np.ndarray) -> np.ndarray:
    return series.values[np.maximum(_newest(series.times, times), 0)]


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's statistics of (N, K) values over N: min, max, mean, std, count, quantiles."""
    values = np.asarray(values, dtype=np.float64)
    stats = {"min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
             "std": values.std(axis=0), "count": np.array([len(values)])}
    stats.update({key: np.quantile(values, q, axis=0) for key, q in QUANTILES.items()})
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of (N, H, W, 3) uint8 frames scaled to [0, 1], each (3, 1, 1)."""
    pixels = frames[:, ::IMAGE_STATS_STRIDE, ::IMAGE_STATS_STRIDE].reshape(-1, 3) / 255.0
    stats = {key: value.reshape(3, 1, 1) for key, value in feature_stats(pixels).items() if key != "count"}
    return {**stats, "count": np.array([len(frames)])}


def merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Statistics of the union of episodes from theirs.

    Exact min, max, mean, std and count; quantiles as the count-weighted mean of the episodes' (as
    LeRobot aggregates them).
    """
    counts = np.array([float(p["count"][0]) for p in parts])
    weights = (counts / counts.sum()).reshape(-1, *([1] * parts[0]["mean"].ndim))
    means = np.stack([p["mean"] for p in parts])
    mean = (weights * means).sum(axis=0)
    variance = (weights * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
    merged = {"min": np.min([p["min"] for p in parts], axis=0), "max": np.max([p["max"] for p in parts], axis=0),
              "mean": mean, "std": np.sqrt(variance), "count": np.array([int(counts.sum())])}
    merged.update({key: (weights * np.stack([p[key] for p in parts])).sum(axis=0) for key in QUANTILES})
    return merged


class VideoFile:
    """One camera's frames of consecutive episodes in one MP4 stream (pts = frame / fps)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], vcodec: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration to stderr otherwise
        self.path, self.frames, self.bytes = path, 0, 0
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1000),
                                                options=VIDEO_CODECS[vcodec][1])
        self.stream.height, self.stream.width = size
        self.stream.pix_fmt = "yuv420p"

    def write(self, frames: np.ndarray, positions: np.ndarray) -> None:
        """Frames at `positions` (increasing frame periods from the file's end); the file then ends after the last."""
        start = self.frames
        for rgb, position in zip(frames, positions):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = start + int(position)
            self._encode(frame)
        self.frames = start + int(positions[-1]) + 1

    def _encode(self, frame: av.VideoFrame | None) -> None:
        # SVT-AV1 run as root switches the thread that opens an encoder to SCHED_FIFO priority 99,
        # and every process this one starts would inherit that: the calling thread gets its own back.
        policy, priority = os.sched_getscheduler(0), os.sched_getparam(0)
        try:
            packets = self.stream.encode(frame)
        finally:
            if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, priority):
                os.sched_setscheduler(0, policy, priority)
        self.bytes += sum(packet.size for packet in packets)
        self.container.mux(packets)

    def close(self) -> None:
        self._encode(None)
        self.container.close()


class LeRobotWriter:
    """Writes a LeRobotDataset v3.0 at `root` for one embodiment, episode by episode."""

    def __init__(self, root: Path, embodiment: Embodiment, fps: float, repo_id: str, vcodec: str = "libsvtav1",
                 image_size: tuple[int, int] | None = None):
        if vcodec not in VIDEO_CODECS:
            raise LeRobotError(f"video codec {vcodec!r} is not one of {', '.join(VIDEO_CODECS)}")
        self.root, self.embodiment, self.fps, self.repo_id, self.vcodec = root, embodiment, fps, repo_id, vcodec
        self.names = list(EmbodimentIO(embodiment).names)
        self.cameras = {name: image_size or (camera.height, camera.width)
                        for name, camera in embodiment.cameras.items()}
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.stats: list[dict[str, dict[str, np.ndarray]]] = []
        self.rows: list[pa.Table] = []
        self.data_file, self.data_bytes, self.frames = 0, 0, 0
        self.videos: dict[str, VideoFile] = {}
        self.video_files = dict.fromkeys(self.cameras, 0)

    def add(self, frames: Frames, columns: dict[str, object]) -> None:
        """One episode's frames (at least one), with its `vla_ros/...` episode columns."""
        index = len(self.episodes)
        count = len(frames)
        # frame periods from the episode's first frame: a dropped frame leaves a gap in time, not a shift
        positions = np.round((frames.times - frames.times[0]) * self.fps).astype(np.int64)
        task_index = np.array([self.tasks.setdefault(t, len(self.tasks)) for t in frames.tasks], dtype=np.int64)
        table = pa.table({
            STATE: pa.FixedSizeListArray.from_arrays(pa.array(frames.states.astype(np.float32).ravel()),
                                                     len(self.names)),
            ACTION: pa.FixedSizeListArray.from_arrays(pa.array(frames.actions.astype(np.float32).ravel()),
                                                      len(self.names)),
            "timestamp": pa.array(positions.astype(np.float32) / np.float32(self.fps)),
            "frame_index": pa.array(np.arange(count, dtype=np.int64)),
            "episode_index": pa.array(np.full(count, index, dtype=np.int64)),
            "index": pa.array(np.arange(self.frames, self.frames + count, dtype=np.int64)),
            "task_index": pa.array(task_index),
            INTERVENTION: pa.array(frames.intervening.astype(np.float32)),
        })
        if self.rows and self.data_bytes + table.nbytes > DATA_FILE_MB * 2**20:
            self._flush_data()
        row = {"episode_index": index, "tasks": list(dict.fromkeys(frames.tasks)), "length": count,
               "data/chunk_index": self.data_file // CHUNKS_SIZE, "data/file_index": self.data_file % CHUNKS_SIZE,
               "dataset_from_index": self.frames, "dataset_to_index": self.frames + count}
        self.rows.append(table)
        self.data_bytes += table.nbytes
        for name, size in self.cameras.items():
            key = IMAGES + name
            video = self.videos.get(name)
            if video is not None and video.bytes > VIDEO_FILE_MB * 2**20:
                video.close()
                self.video_files[name] += 1
                video = None
            if video is None:
                number = self.video_files[name]
                path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=number // CHUNKS_SIZE,
                                                     file_index=number % CHUNKS_SIZE)
                video = self.videos[name] = VideoFile(path, self.fps, size, self.vcodec)
            start = video.frames
            video.write(np.stack([resize(image, *size) for image in frames.images[name]]), positions)
            row.update({f"videos/{key}/chunk_index": self.video_files[name] // CHUNKS_SIZE,
                        f"videos/{key}/file_index": self.video_files[name] % CHUNKS_SIZE,
                        f"videos/{key}/from_timestamp": start / self.fps,
                        f"videos/{key}/to_timestamp": video.frames / self.fps})
        stats = {STATE: feature_stats(frames.states), ACTION: feature_stats(frames.actions),
                 **{IMAGES + name: image_stats(np.stack([resize(image, *size) for image in frames.images[name]]))
                    for name, size in self.cameras.items()},
                 **{name: feature_stats(table.column(name).to_numpy()[:, None].astype(np.float64))
                    for name in (*INDEX_FEATURES, INTERVENTION)}}
        for feature, values in stats.items():
            row.update({f"stats/{feature}/{key}": value.tolist() for key, value in values.items()})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        row.update(columns)
        self.episodes.append(row)
        self.stats.append(stats)
        self.frames += count

    def _flush_data(self) -> None:
        path = self.root / DATA_PATH.format(chunk_index=self.data_file // CHUNKS_SIZE,
                                            file_index=self.data_file % CHUNKS_SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.concat_tables(self.rows)
        schema = table.schema.with_metadata({"huggingface": json.dumps({"info": {"features": _hf_features(
            len(self.names))}})})
        pq.write_table(table.cast(schema), path)
        self.rows, self.data_bytes = [], 0
        self.data_file += 1

    def abort(self) -> None:
        """Close the video files without finishing the dataset."""
        for video in self.videos.values():
            video.container.close()

    def finish(self) -> None:
        """Write the data, videos and meta files; the dataset is complete after this."""
        if not self.episodes:
            raise LeRobotError("no episodes to export")
        self._flush_data()
        for video in self.videos.values():
            video.close()
        meta = self.root / "meta"
        episodes = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), episodes)
        tasks = pa.table({"task_index": pa.array(list(self.tasks.values()), pa.int64()),
                          "__index_level_0__": pa.array(list(self.tasks), pa.large_string())})
        pq.write_table(tasks.replace_schema_metadata({"pandas": json.dumps(_PANDAS_TASKS)}), meta / "tasks.parquet")
        merged = {feature: merge_stats([s[feature] for s in self.stats]) for feature in self.stats[0]}
        (meta / "stats.json").write_text(json.dumps(
            {feature: {key: value.tolist() for key, value in values.items()} for feature, values in merged.items()},
            indent=4))
        (meta / "info.json").write_text(json.dumps(self.info(), indent=4))
        (self.root / "README.md").write_text(self.card())

    def card(self) -> str:
        """The dataset card: the hub reads its front matter; people read what the dataset is and how to use it."""
        tasks = "\n".join(f"- {task}" for task in self.tasks)
        return f"""---
tags: [LeRobot, vla_ros, {self.embodiment.name}]
task_categories: [robotics]
configs:
- config_name: default
  data_files: data/*/*.parquet
---

# {self.repo_id}

{len(self.episodes)} episodes ({self.frames} frames at {self.fps:g} fps) of the `{self.embodiment.name}` embodiment,
recorded with vla_ros {__version__} and exported by `vla-ros export lerobot` (LeRobotDataset {CODEBASE_VERSION}).
`observation.state` is the state and `action` the commanded target, both in the embodiment's layout (their
names are in meta/info.json); each camera is a video `observation.images.<camera>`. The episodes table
(meta/episodes/) keeps each episode's outcome label (`vla_ros/success`, `vla_ros/outcome`), its language
corrections (`vla_ros/corrections`), when a person took over (`vla_ros/interventions`; per frame
`complementary_info.is_intervention`), its source bag and seed.

Tasks:

{tasks}

Load it with `LeRobotDataset("{self.repo_id}", root=<this directory>)`; publish it with
`huggingface-cli upload {self.repo_id} <this directory> --repo-type dataset`.
"""

    def info(self) -> dict:
        vector = {"dtype": "float32", "shape": [len(self.names)], "names": self.names}
        codec = VIDEO_CODECS[self.vcodec][0]
        features = {STATE: vector, ACTION: vector}
        for name, (height, width) in self.cameras.items():
            features[IMAGES + name] = {
                "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": height, "video.width": width, "video.codec": codec,
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": self.fps,
                         "video.channels": 3, "has_audio": False}}
        features.update(INDEX_FEATURES)
        features[INTERVENTION] = {"dtype": "float32", "shape": [1], "names": ["is_intervention"]}
        return {"codebase_version": CODEBASE_VERSION, "robot_type": self.embodiment.name,
                "total_episodes": len(self.episodes), "total_frames": self.frames, "total_tasks": len(self.tasks),
                "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB,
                "video_files_size_in_mb": VIDEO_FILE_MB, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"},
                "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features}


_PANDAS_TASKS = {
    "index_columns": ["__index_level_0__"],
    "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                        "metadata": {"encoding": "UTF-8"}}],
    "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                 "metadata": None},
                {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
                 "metadata": None}],
}


def _hf_features(size: int) -> dict:
    vector = {"feature": {"dtype": "float32", "_type": "Value"}, "length": size, "_type": "List"}
    return {STATE: vector, ACTION: vector,
            **{name: {"dtype": spec["dtype"], "_type": "Value"} for name, spec in INDEX_FEATURES.items()},
            INTERVENTION: {"dtype": "float32", "_type": "Value"}}


@dataclass
class Exported:
    """What export did to one bag."""

    source: str
    frames: int
    dropped: dict[str, int]
    success: bool | None


def export_lerobot(bags: list[Path], out: Path, embodiment: Embodiment, fps: float, repo_id: str,
                   max_image_age: float, vcodec: str = "libsvtav1", image_size: tuple[int, int] | None = None,
                   on_episode: Callable[[Exported], None] = lambda exported: None) -> list[Exported]:
    """Write `bags` (episodes of `embodiment`) as a LeRobotDataset at `out`, images resized to `image_size`.

    The dataset is written beside `out` and moved there when complete: a failed export leaves nothing.
    An episode with no frame left (all dropped) is reported with 0 frames and left out.
    """
    if not fps > 0:
        raise LeRobotError(f"fps {fps} is not positive")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LeRobotError(f"{out} exists and is not an empty directory: give a new one to --out")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    writer = LeRobotWriter(staging, embodiment, fps, repo_id, vcodec, image_size)
    done = []
    try:
        for bag in bags:
            done.append(_export_episode(writer, bag, embodiment, fps, max_image_age))
            on_episode(done[-1])
        if not writer.episodes:
            totals = ", ".join(f"{count} for {reason}" for reason, count in dropped_totals(done).items())
            raise LeRobotError(f"no frames to export: every frame was dropped ({totals})")
        writer.finish()
    except BaseException:
        writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    staging.rename(out)
    return done


def _export_episode(writer: LeRobotWriter, bag: Path, embodiment: Embodiment, fps: float,
                    max_image_age: float) -> Exported:
    info = read_info(bag)
    recorded = info.get("embodiment")
    if recorded is not None and recorded != embodiment.name:
        raise LeRobotError(f"{bag}: recorded on {recorded!r}, the dataset is {embodiment.name!r}: "
                           f"export each embodiment's episodes to their own dataset")
    episode = read_episode(bag)
    frames = sample_frames(episode, embodiment, fps, max_image_age)
    outcome = episode.outcome
    success = None if outcome is None else bool(outcome.get("success", False))
    if len(frames):
        writer.add(frames, {
            "vla_ros/source": bag.name,
            "vla_ros/success": success,
            "vla_ros/outcome": json.dumps(outcome),
            "vla_ros/corrections": json.dumps([[round(t - frames.times[0], 6), text]
                                               for t, text in episode.corrections]),
            "vla_ros/interventions": json.dumps([[round(start - frames.times[0], 6), round(end - frames.times[0], 6)]
                                                 for start, end in episode.interventions]),
            "vla_ros/seed": int(info["seed"]) if info.get("seed", "").lstrip("-").isdigit() else None,
            "vla_ros/dropped_frames": sum(frames.dropped.values()),
        })
    return Exported(bag.name, len(frames), frames.dropped, success)


def dropped_totals(done: list[Exported]) -> dict[str, int]:
    """Frames dropped over all `done` episodes, per reason."""
    totals: dict[str, int] = {}
    for exported in done:
        for reason, count in exported.dropped.items():
            totals[reason] = totals.get(reason, 0) + count
    return totals


def is_lerobot(path: Path) -> bool:
    """Whether `path` looks like a LeRobotDataset (it has meta/info.json)."""
    return (Path(path) / "meta" / "info.json").is_file()


class LeRobotSource:
    """A LeRobotDataset v3.0 read back as Episodes for one embodiment (names mapped by its config)."""

    def __init__(self, root: Path, embodiment: Embodiment):
        self.root, self.embodiment = Path(root), embodiment
        try:
            self.info = json.loads((self.root / "meta" / "info.json").read_text())
        except (OSError, ValueError) as error:
            raise LeRobotError(f"{self.root}: not a LeRobot dataset ({error})") from None
        version = self.info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise LeRobotError(f"{self.root}: LeRobot dataset {version}, only {CODEBASE_VERSION} is read: convert it "
                               f"with LeRobot's convert_dataset_v21_to_v30")
        self.fps = float(self.info["fps"])
        features = self.info["features"]
        io = EmbodimentIO(embodiment)
        mapping = embodiment.config.lerobot
        self.columns = {}
        for key in (STATE, ACTION):
            if key not in features:
                raise LeRobotError(f"{self.root}: the dataset has no {key!r} feature")
            names = lerobot_feature_names(self.info, key) or []
            wanted = mapping.dataset_names(io.names)
            absent = [n for n in wanted if n not in names]
            if absent:
                raise LeRobotError(
                    f"{self.root}: {key} has the names {names[:8]}{' ...' if len(names) > 8 else ''}; embodiment "
                    f"{embodiment.name} needs {', '.join(absent[:6])}{' ...' if len(absent) > 6 else ''}: a dataset "
                    f"of another robot, or map its names under lerobot.names in the embodiment file")
            self.columns[key] = np.array([names.index(n) for n in wanted])
        self.cameras = {}
        for name in embodiment.cameras:
            key = mapping.cameras.get(name, IMAGES + name)
            if features.get(key, {}).get("dtype") != "video":
                videos = [k for k, v in features.items() if v.get("dtype") == "video"]
                raise LeRobotError(f"{self.root}: no video feature {key!r} for camera {name!r} (the dataset has "
                                   f"{', '.join(videos) or 'none'}): map it under lerobot.cameras in the embodiment "
                                   f"file")
            self.cameras[name] = key
        self.episodes = pq.read_table(self.root / "meta" / "episodes").to_pylist()
        tasks = pq.read_table(self.root / "meta" / "tasks.parquet").to_pydict()
        text = tasks.get("__index_level_0__") or tasks.get("task")
        self.tasks = dict(zip(tasks["task_index"], text))
        self.data = pq.read_table(self.root / "data").sort_by("index")

    def __len__(self) -> int:
        return len(self.episodes)

    @staticmethod
    def robot_type(root: Path) -> str:
        """The robot_type the dataset at `root` names (our exports: the embodiment's name)."""
        try:
            return str(json.loads((Path(root) / "meta" / "info.json").read_text()).get("robot_type") or "")
        except (OSError, ValueError) as error:
            raise LeRobotError(f"{root}: not a LeRobot dataset ({error})") from None

    def info_of(self, index: int) -> dict[str, str]:
        """What train reads from a bag's metadata: the embodiment, the outcome's success, its takeovers if recorded."""
        row = self.episodes[index]
        success = row.get("vla_ros/success")
        info = {"embodiment": self.embodiment.name, "outcome.success": "false" if success is False else "true"}
        outcome = json.loads(row["vla_ros/outcome"]) if row.get("vla_ros/outcome") else None
        if isinstance(outcome, dict) and "interventions" in outcome:  # recorded in deployment (recorder_node)
            info["outcome.interventions"] = json.dumps(outcome["interventions"])
        return info

    def episode(self, index: int) -> Episode:
        """Episode `index` as read_episode would give it: frames at their timestamps, actions as commands."""
        row = self.episodes[index]
        io = EmbodimentIO(self.embodiment)
        rows = self.data.slice(row["dataset_from_index"], row["length"])
        times = rows.column("timestamp").to_numpy().astype(np.float64)
        states = np.stack(rows.column(STATE).to_numpy(zero_copy_only=False))[:, self.columns[STATE]]
        actions = np.stack(rows.column(ACTION).to_numpy(zero_copy_only=False))[:, self.columns[ACTION]]
        state_joints, state_base = io.split(states)
        command_joints, command_base = io.split(actions)
        tasks = rows.column("task_index").to_numpy()
        changes = [i for i in range(len(tasks)) if i == 0 or tasks[i] != tasks[i - 1]]
        images = {}
        for name, key in self.cameras.items():
            start = row[f"videos/{key}/from_timestamp"]
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                 file_index=row[f"videos/{key}/file_index"])
            images[self.embodiment.cameras[name].topic] = (times, decode_frames(path, start, times, self.fps))
        outcome = json.loads(row["vla_ros/outcome"]) if row.get("vla_ros/outcome") else None
        corrections = json.loads(row["vla_ros/corrections"]) if row.get("vla_ros/corrections") else []
        if row.get("vla_ros/interventions"):
            interventions = json.loads(row["vla_ros/interventions"])
        elif INTERVENTION in rows.column_names:  # a LeRobot human-in-the-loop dataset: per-frame flags
            flags = np.ravel(np.stack(rows.column(INTERVENTION).to_numpy(zero_copy_only=False))) > 0.5
            interventions = segments([(float(t), bool(f)) for t, f in zip(times, flags)],
                                     float(times[-1]) + 1.0 / self.fps)  # the last frame lasts a period
        else:
            interventions = []
        episode = Episode(
            path=self.root / f"episode_{index:06d}", info=self.info_of(index),
            joint_states=Series(times, state_joints, io.joints), commands=Series(times, command_joints, io.joints),
            images=images, instructions=[(float(times[i]), self.tasks[int(tasks[i])]) for i in changes],
            outcome=outcome, corrections=[(float(t), str(text)) for t, text in corrections],
            interventions=[(float(start), float(end)) for start, end in interventions])
        if io.base is not None:
            episode.base_velocity = Series(times, state_base, ("vx", "vy", "wz"))
            episode.base_commands = Series(times, command_base, ("vx", "vy", "wz"))
        return episode


def decode_frames(path: Path, start: float, times: np.ndarray, fps: float) -> np.ndarray:
    """(len(times), H, W, 3) uint8: the frames of `path` at `start` + `times` [s] (on the 1/fps grid)."""
    first = int(round(start * fps))
    wanted = {first + int(round(t * fps)): i for i, t in enumerate(times)}
    frames: list[np.ndarray | None] = [None] * len(times)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                number = int(round(float(frame.time) * fps))
                if number > max(wanted):
                    break
                if number in wanted:
                    frames[wanted[number]] = frame.to_ndarray(format="rgb24")
    except (OSError, av.FFmpegError) as error:
        raise LeRobotError(f"{path}: cannot decode: {error}") from None
    missing = [float(t) for t, frame in zip(times, frames) if frame is None]
    if missing:
        raise LeRobotError(f"{path}: no frames at {missing[:3]} s from {start:.3f} s")
    return np.stack(frames)
