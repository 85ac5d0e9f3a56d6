"""numpy <-> sensor_msgs/Image and CompressedImage, without cv_bridge.

Encodings follow sensor_msgs/image_encodings.hpp. ``step`` (row stride, may
include padding) and ``is_bigendian`` are honoured. Every failure raises
ImageError with a short reason that the node counts in diagnostics.
"""
from __future__ import annotations

import array
import io
import sys
from typing import Optional

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..config import MAX_PIXELS, MAX_SIDE, MIN_SIDE

NS_PER_S = 1_000_000_000

# encoding -> (dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
    "yuv422": (np.uint8, 2), "uyvy": (np.uint8, 2), "yuv422_yuy2": (np.uint8, 2), "yuyv": (np.uint8, 2),
    "bayer_rggb8": (np.uint8, 1), "bayer_bggr8": (np.uint8, 1),
    "bayer_gbrg8": (np.uint8, 1), "bayer_grbg8": (np.uint8, 1),
    "bayer_rggb16": (np.uint16, 1), "bayer_bggr16": (np.uint16, 1),
    "bayer_gbrg16": (np.uint16, 1), "bayer_grbg16": (np.uint16, 1),
}
COLOR_ENCODINGS = frozenset(e for e in ENCODINGS if e != "32FC1")
# OpenCV names Bayer patterns by the second row's first two pixels (as cv_bridge maps them).
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
          "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}


class ImageError(ValueError):
    """A frame that cannot be read; ``reason`` is a short key for diagnostics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_image_header(msg: Image) -> int:
    """Every check that needs no pixel work: encoding, size, step, data length. -> bytes per row."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError("unsupported_encoding", f"encoding {enc!r} is not supported")
    dtype, channels = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    check_size(w, h)
    if channels == 2 and w % 2:
        raise ImageError("bad_size", f"{enc} needs an even width (two pixels share chroma), got {w}")
    row = w * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ImageError("bad_step", f"step {step} < {row} bytes per row for {w}x{enc}")
    if len(msg.data) < step * (h - 1) + row:
        raise ImageError("bad_size", f"{len(msg.data)} data bytes < {step} step x {h} rows")
    return row


def image_to_array(msg: Image) -> np.ndarray:
    """Image -> (H, W[, C]) array in the message's own encoding, native byte order.

    A view of the message's buffer (rclpy's ``array.array``) when rows are tight and the byte order
    is native, which is what cameras send; otherwise a copy."""
    row = check_image_header(msg)
    dtype, channels = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = msg.data
    buf = np.frombuffer(data if isinstance(data, (bytes, bytearray, memoryview, np.ndarray, array.array))
                        else bytes(data), dtype=np.uint8)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1))
    order = ">" if msg.is_bigendian else "<"
    arr = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    arr = arr.astype(np.dtype(dtype).newbyteorder("="), copy=False)
    return arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)


def check_size(w: int, h: int) -> None:
    """Any image: not empty, not beyond the pixel cap."""
    if h == 0 or w == 0:
        raise ImageError("empty_image", f"{w}x{h} image")
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise ImageError("image_too_large", f"{w}x{h} exceeds {MAX_SIDE} per side / {MAX_PIXELS} pixels")


def check_frame_size(w: int, h: int) -> None:
    """A camera frame the pipeline can process: check_size and at least MIN_SIDE per side."""
    check_size(w, h)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageError("image_too_small", f"{w}x{h} is below {MIN_SIDE}x{MIN_SIDE}")


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds; ImageError("bad_stamp") for impossible stamps.

    rclpy's Time.from_msg raises on negative seconds; a message must never reach it unchecked.
    """
    sec, nsec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0 or not 0 <= nsec < NS_PER_S:
        raise ImageError("bad_stamp", f"stamp {sec}.{nsec:09d} is not a valid time")
    return sec * NS_PER_S + nsec


def check_frame_header(msg) -> None:
    """What a camera frame can be refused for on arrival, before it takes the newest-frame slot.

    A bad frame refused here never displaces a good pending one, and is always counted (a frame
    checked only when the inference stage takes it may be replaced by a newer one first).
    """
    if isinstance(msg, CompressedImage):
        if not len(msg.data):
            raise ImageError("corrupt_compressed", "empty payload")
        w, h = compressed_size(bytes(msg.data))
        check_frame_size(int(w), int(h))
        return
    check_image_header(msg)
    if msg.encoding not in COLOR_ENCODINGS:
        raise ImageError("unsupported_encoding", f"{msg.encoding!r} is not a color encoding")
    check_frame_size(int(msg.width), int(msg.height))


def frame_to_rgb8(msg) -> np.ndarray:
    """A camera frame (Image or CompressedImage) -> (H, W, 3) uint8 RGB, size-checked before any work."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb8(msg)
    check_frame_size(int(msg.width), int(msg.height))
    return image_to_rgb8(msg)


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Any supported color/mono encoding -> (H, W, 3) uint8 RGB."""
    arr = image_to_array(msg)
    enc = msg.encoding
    if enc in ("rgb8", "8UC3"):
        return arr
    if enc == "bgr8":
        return arr[..., ::-1].copy()
    if enc in ("rgba8", "bgra8"):
        rgb = arr[..., :3]
        return (rgb if enc == "rgba8" else rgb[..., ::-1]).copy()
    if enc in ("rgb16", "bgr16"):
        rgb = (arr >> 8).astype(np.uint8)
        return rgb if enc == "rgb16" else rgb[..., ::-1].copy()
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    if enc in ("mono16", "16UC1"):
        return np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if enc in ("yuv422", "uyvy"):
        return cv2.cvtColor(arr, cv2.COLOR_YUV2RGB_UYVY)
    if enc in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(arr, cv2.COLOR_YUV2RGB_YUY2)
    if enc.startswith("bayer_"):
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        return cv2.cvtColor(arr, _BAYER[enc[6:10]])
    raise ImageError("unsupported_encoding", f"{enc!r} is not a color encoding")


def depth_to_meters(msg: Image) -> np.ndarray:
    """16UC1/mono16 (mm) or 32FC1 (m) -> (H, W) float32 metres, NaN where invalid (0, NaN, inf)."""
    if msg.encoding not in ("16UC1", "mono16", "32FC1"):
        raise ImageError("unsupported_depth_encoding", f"depth encoding {msg.encoding!r}")
    arr = image_to_array(msg)
    depth = arr.astype(np.float32) / 1000.0 if arr.dtype == np.uint16 else arr.astype(np.float32)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def compressed_size(payload: bytes) -> tuple:
    """(width, height) from the compressed header alone; a 200 kB PNG can hold 16000x16000 pixels."""
    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(payload)) as im:  # lazy: reads the header, decodes nothing
            return im.size
    except PILImage.DecompressionBombError as exc:  # PIL refuses past 2 x its own pixel limit
        raise ImageError("image_too_large", str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError("corrupt_compressed", f"unreadable header: {exc}") from None


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    payload = bytes(msg.data)
    if not payload:
        raise ImageError("corrupt_compressed", "empty payload")
    w, h = compressed_size(payload)
    check_frame_size(int(w), int(h))
    bgr = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError("corrupt_compressed", f"cannot decode {msg.format!r} payload of {len(payload)} bytes")
    if bgr.shape[:2] != (h, w):
        raise ImageError("corrupt_compressed", f"header says {w}x{h}, decoded {bgr.shape[1]}x{bgr.shape[0]}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def packed(arr: np.ndarray, typecode: str = "B") -> array.array:
    """A message's ``uint8[]``/``float32[]`` field value from an array, in one copy.

    The generated setters keep an ``array.array`` as it is; anything else is converted by
    ``array.array(code, value)``, and with ROS_PYTHON_CHECK_FIELDS=1 first checked element by
    element in Python (46 ms for one VGA image)."""
    out = array.array(typecode)
    flat = np.ascontiguousarray(arr).reshape(-1)
    out.frombytes(flat.view(np.uint8) if typecode == "B" else flat.astype(out.typecode, copy=False).view(np.uint8))
    return out


def array_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """(H, W[, C]) array -> Image with a tight step in native byte order."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}")
    dtype, channels = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if (arr.ndim == 2 and channels != 1) or (arr.ndim == 3 and arr.shape[2] != channels):
        raise ValueError(f"shape {arr.shape} does not fit {encoding}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = int(arr.shape[1] * channels * arr.itemsize)
    msg.data = packed(arr)
    return msg


def camera_frame(rgb: np.ndarray, K: np.ndarray, header, depth: Optional[np.ndarray] = None):
    """One RGB-D frame as a camera driver publishes it, under one header: (rgb8 Image, depth Image or None,
    CameraInfo with K and the size). Depth is 32FC1 metres for float arrays, 16UC1 millimetres for uint16."""
    img = array_to_image(rgb, "rgb8", header)
    info = CameraInfo(header=header)
    info.height, info.width = int(rgb.shape[0]), int(rgb.shape[1])
    info.k = [float(v) for v in np.asarray(K).flatten()]
    d = None
    if depth is not None:
        d = array_to_image(depth, "16UC1" if depth.dtype == np.uint16 else "32FC1", header)
    return img, d, info


def rgb8_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header=None) -> CompressedImage:
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("encoding failed")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = packed(buf)
    return msg
