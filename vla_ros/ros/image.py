"""sensor_msgs/Image and CompressedImage <-> numpy (H, W, 3) uint8 RGB."""
from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import PIL.Image
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vla_ros.errors import VlaRosError

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
MAX_DECODED_PIXELS = 4096 * 4096  # the largest picture a CompressedImage may decode to (4K fits)


class ImageError(VlaRosError):
    """An Image message that cannot be read as an RGB picture."""


def to_image_msg(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """An rgb8 Image of an (H, W, 3) uint8 array."""
    height, width, _ = rgb.shape
    return Image(header=Header(stamp=stamp, frame_id=frame_id), height=height, width=width, encoding="rgb8",
                 is_bigendian=0, step=width * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def from_image_msg(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an rgb8, bgr8 or mono8 Image (a view of the message for rgb8)."""
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise ImageError(f"encoding {msg.encoding!r} is not one of {', '.join(CHANNELS)}")
    if not (msg.width and msg.height):
        raise ImageError(f"an empty {msg.width}x{msg.height} image")
    if msg.step < msg.width * channels or len(msg.data) < msg.step * msg.height:
        raise ImageError(f"{msg.width}x{msg.height} {msg.encoding} needs step >= {msg.width * channels} "
                         f"and {msg.step * msg.height} bytes, got step {msg.step} and {len(msg.data)} bytes")
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        return cv2.cvtColor(pixels,
                            cv2.COLOR_BGR2RGB)  # one contiguous copy: a reversed view costs every later copy more
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    return pixels


def from_compressed_msg(msg: CompressedImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a jpeg or png CompressedImage.

    The size its header declares is read first (Pillow reads only the header): a few bytes may
    declare a picture of gigabytes, which is refused before anything is decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)  # the size is judged below
            with PIL.Image.open(io.BytesIO(msg.data)) as header:
                width, height = header.size
    except PIL.Image.DecompressionBombError as error:
        raise ImageError(f"a {msg.format!r} CompressedImage too large to decode: {error}") from None
    except (OSError, ValueError, SyntaxError):
        raise ImageError(f"cannot decode a {msg.format!r} CompressedImage of {len(msg.data)} bytes") from None
    if width * height > MAX_DECODED_PIXELS:
        raise ImageError(f"a {msg.format!r} CompressedImage of {width}x{height} pixels (at most "
                         f"{MAX_DECODED_PIXELS} pixels)")
    try:
        pixels = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR) if len(msg.data) else None
    except cv2.error:  # OpenCV asserts on some malformed data rather than failing
        pixels = None
    if pixels is None:
        raise ImageError(f"cannot decode a {msg.format!r} CompressedImage of {len(msg.data)} bytes")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def to_compressed_msg(rgb: np.ndarray, stamp: Time, frame_id: str, fmt: str = "jpeg",
                      quality: int = 90) -> CompressedImage:
    """A jpeg or png CompressedImage of an (H, W, 3) uint8 array (image_transport's format names)."""
    extension = {"jpeg": ".jpg", "png": ".png"}.get(fmt)
    if extension is None:
        raise ImageError(f"format {fmt!r} is not jpeg or png")
    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"cannot encode a {rgb.shape} image as {fmt}")
    return CompressedImage(header=Header(stamp=stamp, frame_id=frame_id), format=fmt, data=data.tobytes())
