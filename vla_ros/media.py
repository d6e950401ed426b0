"""Camera frames as pictures: resized for a model, tiled in contact sheets, written as PNG or MP4."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vla_ros.errors import VlaRosError


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """`rgb` at (height, width): area averaging to shrink, bilinear to grow; no copy if it fits."""
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = rgb.shape[0] * rgb.shape[1] > height * width
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def contact_sheet(frames: list[np.ndarray], columns: int = 4, labels: list[str] | None = None) -> np.ndarray:
    """One (H', W', 3) uint8 RGB image tiling `frames` (all the same size), labels in their corner."""
    if not frames:
        raise VlaRosError("no frames to lay out")
    height, width = frames[0].shape[:2]
    rows = -(-len(frames) // columns)
    sheet = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        tile = np.ascontiguousarray(frame[..., :3], dtype=np.uint8).copy()
        if labels is not None:
            cv2.putText(tile, labels[index], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile
    return sheet


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image (PNG or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise VlaRosError(f"could not write {path}")


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write RGB frames as an MP4 (mp4v) video."""
    if not frames:
        raise VlaRosError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise VlaRosError(f"could not open {path} for writing video")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
    finally:
        writer.release()


def save_frames(path: Path, frames: list[np.ndarray], fps: float, labels: list[str] | None = None) -> None:
    """A video for .mp4/.avi paths, else a contact sheet of up to 16 evenly spaced frames."""
    if path.suffix.lower() in (".mp4", ".avi"):
        write_video(path, frames, fps)
        return
    picks = np.linspace(0, len(frames) - 1, min(16, len(frames))).round().astype(int)
    write_image(path, contact_sheet([frames[i] for i in picks], labels=[labels[i] for i in picks] if labels else None))
