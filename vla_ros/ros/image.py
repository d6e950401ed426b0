"""sensor_msgs/Image <-> numpy (H, W, 3) uint8 RGB."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from vla_ros.errors import VlaRosError

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class ImageError(VlaRosError):
    """An Image message that cannot be read as an RGB picture."""


def to_image_msg(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """An rgb8 Image of an (H, W, 3) uint8 array."""
    height, width, _ = rgb.shape
    return Image(header=Header(stamp=stamp, frame_id=frame_id), height=height, width=width, encoding="rgb8",
                 is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def from_image_msg(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an rgb8, bgr8 or mono8 Image (a view where the layout allows)."""
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise ImageError(f"encoding {msg.encoding!r} is not one of {', '.join(CHANNELS)}")
    if msg.step < msg.width * channels or len(msg.data) < msg.step * msg.height:
        raise ImageError(f"{msg.width}x{msg.height} {msg.encoding} needs step >= {msg.width * channels} "
                         f"and {msg.step * msg.height} bytes, got step {msg.step} and {len(msg.data)} bytes")
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        return pixels[..., ::-1]
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels
