"""Image conversion tested against the encoding definitions in sensor_msgs/image_encodings."""
import sys

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from textregion_ros.ros.convert import (ImageError, array_to_image, compressed_to_rgb8, depth_to_meters,
                                        image_to_array, image_to_rgb8, rgb8_to_compressed)

RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
                [[1, 2, 3], [200, 100, 50], [0, 0, 0], [255, 255, 255]]], np.uint8)  # 2 x 4


def msg(data: bytes, h, w, enc, step, big=False):
    m = Image()
    m.height, m.width, m.encoding, m.step, m.is_bigendian = h, w, enc, step, int(big)
    m.data = data
    return m


def padded(rows: np.ndarray, pad: int) -> bytes:
    """Row bytes followed by ``pad`` junk bytes per row (step > width * bpp)."""
    return b"".join(r.tobytes() + b"\xee" * pad for r in rows)


@pytest.mark.parametrize("enc,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0])])
def test_3_channel_with_padded_step(enc, order):
    raw = RGB[..., order]
    m = msg(padded(raw, 5), 2, 4, enc, 4 * 3 + 5)
    assert np.array_equal(image_to_rgb8(m), RGB)


@pytest.mark.parametrize("enc,order", [("rgba8", [0, 1, 2, 3]), ("bgra8", [2, 1, 0, 3])])
def test_4_channel(enc, order):
    rgba = np.concatenate([RGB, np.full((2, 4, 1), 7, np.uint8)], axis=2)
    m = msg(rgba[..., order].tobytes(), 2, 4, enc, 16)
    assert np.array_equal(image_to_rgb8(m), RGB)


def test_mono8_and_mono16_both_endiannesses():
    gray = np.array([[0, 128, 255]], np.uint8)
    assert np.array_equal(image_to_rgb8(msg(gray.tobytes(), 1, 3, "mono8", 3)), np.repeat(gray[..., None], 3, 2))
    g16 = np.array([[0, 0x1234, 0xFF00]], np.uint16)
    for big in (False, True):
        data = g16.astype(">u2" if big else "<u2").tobytes()
        arr = image_to_array(msg(data, 1, 3, "mono16", 6, big))
        assert arr.tolist() == [[0, 0x1234, 0xFF00]]
        assert image_to_rgb8(msg(data, 1, 3, "mono16", 6, big))[0, :, 0].tolist() == [0, 0x12, 0xFF]


def test_depth_16uc1_mm_and_32fc1_m_with_invalid_pixels():
    mm = np.array([[0, 1500, 65535]], np.uint16)
    d = depth_to_meters(msg(mm.astype(">u2").tobytes(), 1, 3, "16UC1", 6, big=True))
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.5) and d[0, 2] == pytest.approx(65.535)
    m = np.array([[np.nan, 2.25, -1.0, np.inf]], np.float32)
    d = depth_to_meters(msg(padded(m, 4), 1, 4, "32FC1", 20))
    assert np.isnan(d[0, [0, 2, 3]]).all() and d[0, 1] == 2.25
    with pytest.raises(ImageError):
        depth_to_meters(msg(b"\0" * 12, 1, 4, "rgb8", 12))


def yuv(rgb):
    """BT.601 limited range, as UVC cameras produce and cv_bridge / OpenCV decode."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    return y, 128 - 0.148 * r - 0.291 * g + 0.439 * b, 128 + 0.439 * r - 0.368 * g - 0.071 * b


@pytest.mark.parametrize("enc", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_packed_pixel_orders(enc):
    # Two pixels share U and V; use a flat color so the shared chroma is exact.
    color = np.array([[[200, 80, 40]] * 4] * 2, np.uint8)
    y, u, v = (np.clip(np.round(c), 0, 255).astype(np.uint8) for c in yuv(color))
    if enc in ("yuv422", "uyvy"):  # U Y0 V Y1
        packed = np.stack([u[:, ::2], y[:, ::2], v[:, ::2], y[:, 1::2]], -1)
    else:  # Y0 U Y1 V
        packed = np.stack([y[:, ::2], u[:, ::2], y[:, 1::2], v[:, ::2]], -1)
    out = image_to_rgb8(msg(packed.tobytes(), 2, 4, enc, 8))
    assert np.abs(out.astype(int) - color.astype(int)).max() <= 3


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_color(pattern):
    color = {"r": 220, "g": 120, "b": 30}
    h, w = 8, 8
    mosaic = np.zeros((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = color[pattern[dy * 2 + dx]]
    out = image_to_rgb8(msg(mosaic.tobytes(), h, w, f"bayer_{pattern}8", w))
    centre = out[2:-2, 2:-2].reshape(-1, 3)
    assert np.abs(centre.astype(int) - [220, 120, 30]).max() <= 2, pattern


def test_compressed_jpeg_and_png_roundtrip_and_corrupt_payload():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (250, 10, 10)
    for fmt in ("png", "jpeg"):
        out = compressed_to_rgb8(rgb8_to_compressed(rgb, fmt))
        err = np.abs(out.astype(int) - rgb)
        assert out.shape == rgb.shape and err.mean() <= (0 if fmt == "png" else 8)
        assert out[8, 3, 0] > 200 and out[8, 20].max() < 30  # lossy, but the halves keep their colours
    bad = CompressedImage()
    bad.format, bad.data = "jpeg", b"\xff\xd8 not a jpeg"
    with pytest.raises(ImageError) as e:
        compressed_to_rgb8(bad)
    assert e.value.reason == "corrupt_compressed"


@pytest.mark.parametrize("m,reason", [
    (msg(b"\0" * 12, 2, 2, "rgb9", 6), "unsupported_encoding"),
    (msg(b"\0" * 10, 2, 2, "rgb8", 6), "bad_size"),
    (msg(b"\0" * 12, 2, 2, "rgb8", 5), "bad_step"),
    (msg(b"", 0, 0, "rgb8", 0), "empty_image"),
    (msg(b"", 100000, 100000, "rgb8", 300000), "image_too_large"),
])
def test_bad_images_raise_with_a_reason(m, reason):
    with pytest.raises(ImageError) as e:
        image_to_rgb8(m)
    assert e.value.reason == reason


def test_array_to_image_roundtrip():
    for arr, enc in [(RGB, "rgb8"), (np.arange(12, dtype=np.uint16).reshape(3, 4), "mono16"),
                     (np.ones((2, 2), np.float32), "32FC1")]:
        m = array_to_image(arr, enc)
        assert m.step == arr.shape[1] * arr.itemsize * (3 if arr.ndim == 3 else 1)
        assert m.is_bigendian == int(sys.byteorder == "big")
        assert np.array_equal(image_to_array(m), arr)
    with pytest.raises(ValueError):
        array_to_image(RGB, "mono8")


CHECKED_FIELDS = r"""
import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
import textregion_ros.msg as trmsg
from textregion_ros.ros.convert import array_to_image, image_to_array, packed
rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
back = deserialize_message(serialize_message(array_to_image(rgb, "rgb8")), Image)
assert (image_to_array(back) == rgb).all()
r = trmsg.Region(); r.token = packed(np.linspace(-1, 1, 7), "f")
assert np.allclose(deserialize_message(serialize_message(r), trmsg.Region).token, np.linspace(-1, 1, 7))
print("ok")
"""


def test_message_fields_are_packed_arrays_accepted_by_checked_setters():
    """Byte and float fields get an array.array of the field's type code, which the generated setters
    keep as is; anything else they convert in Python, element by element when ROS_PYTHON_CHECK_FIELDS=1
    (the sensor_msgs setter read at import, so that case runs in its own interpreter)."""
    import array
    import subprocess

    from textregion_ros.ros.convert import packed
    m = array_to_image(RGB, "rgb8")
    assert isinstance(m.data, array.array) and m.data.typecode == "B" and bytes(m.data) == RGB.tobytes()
    depth = np.array([[0.5, np.nan], [2.0, 0.0]], np.float32)
    assert (np.frombuffer(array_to_image(depth, "32FC1").data, np.float32) == depth.ravel()).sum() == 3  # NaN != NaN
    t = packed(np.array([0.25, -1.5], np.float64), "f")
    assert t.typecode == "f" and list(t) == [0.25, -1.5]
    # A received frame (rclpy hands over an array.array) is read in place; a padded one is copied, correctly.
    from rclpy.serialization import deserialize_message, serialize_message
    got = deserialize_message(serialize_message(m), Image)
    assert isinstance(got.data, array.array)
    assert np.shares_memory(image_to_rgb8(got), np.frombuffer(got.data, np.uint8))
    assert (image_to_rgb8(got) == RGB).all()
    env = dict(__import__("os").environ, ROS_PYTHON_CHECK_FIELDS="1")
    p = subprocess.run([sys.executable, "-c", CHECKED_FIELDS], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_camera_frame_is_one_rgbd_frame_under_one_header():
    from std_msgs.msg import Header

    from textregion_ros.ros.convert import camera_frame
    K = np.array([[500.0, 0, 2], [0, 510.0, 1], [0, 0, 1]])
    hdr = Header(frame_id="cam")
    hdr.stamp.sec, hdr.stamp.nanosec = 12, 34
    img, d, info = camera_frame(RGB, K, hdr, np.full((2, 4), 1.5, np.float32))
    assert (image_to_rgb8(img) == RGB).all() and (depth_to_meters(d) == 1.5).all() and d.encoding == "32FC1"
    assert (info.height, info.width) == (2, 4) and list(info.k) == K.flatten().tolist()
    assert all((m.header.frame_id, m.header.stamp.sec, m.header.stamp.nanosec) == ("cam", 12, 34) for m in (img, d, info))
    _, mm, _ = camera_frame(RGB, K, hdr, np.full((2, 4), 1500, np.uint16))
    assert mm.encoding == "16UC1" and (depth_to_meters(mm) == 1.5).all()
    assert camera_frame(RGB, K, hdr)[1] is None
