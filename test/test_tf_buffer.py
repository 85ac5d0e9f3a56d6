"""The node's own TF buffer (where tf2_ros is missing): against hand-built homogeneous matrices."""
import math
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from textregion_ros.ros.tf_buffer import TfBuffer, TransformUnavailable


def _ts(parent, child, xyzw, xyz, sec=0, nanosec=0):
    ts = TransformStamped()
    ts.header.frame_id, ts.child_frame_id = parent, child
    ts.header.stamp.sec, ts.header.stamp.nanosec = sec, nanosec
    r, t = ts.transform.rotation, ts.transform.translation
    r.x, r.y, r.z, r.w = (float(v) for v in xyzw)
    t.x, t.y, t.z = (float(v) for v in xyz)
    return ts


def _H(xyzw, xyz):
    """4x4 child -> parent, built by hand from the quaternion formula (not through RigidTransform)."""
    x, y, z, w = np.asarray(xyzw, float) / np.linalg.norm(xyzw)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    H = np.eye(4)
    H[:3, :3], H[:3, 3] = R, xyz
    return H


def _apply(T, p):
    return T.points(np.asarray(p, float)[None])[0]


TREE = {  # child: (parent, quaternion, translation)
    "odom": ("map", Rotation.from_euler("z", 30, degrees=True).as_quat(), (1.0, 2.0, 0.0)),
    "base_link": ("odom", Rotation.from_euler("xyz", (5, -10, 70), degrees=True).as_quat(), (0.5, -0.2, 0.1)),
    "camera": ("base_link", (-0.5, 0.5, -0.5, 0.5), (0.1, 0.0, 1.0)),
    "lidar": ("base_link", Rotation.from_euler("y", 15, degrees=True).as_quat(), (0.0, 0.3, 0.8)),
}


def _buffer(bad=None):
    buf = TfBuffer(None, on_bad=None if bad is None else (lambda r, t: bad.append((r, t))))
    buf.add(TFMessage(transforms=[_ts(p, c, q, t, sec=10) for c, (p, q, t) in TREE.items()]), False)
    buf.add(TFMessage(transforms=[_ts(p, c, q, t, sec=11) for c, (p, q, t) in TREE.items()]), False)
    return buf


def _H_to_root(frame):
    H = np.eye(4)
    while frame in TREE:
        p, q, t = TREE[frame]
        H = _H(q, t) @ H
        frame = p
    return H


@pytest.mark.parametrize("target,source", [("map", "camera"), ("camera", "map"), ("lidar", "camera"),
                                           ("odom", "lidar"), ("camera", "camera")])
def test_chains_equal_the_product_of_homogeneous_matrices(target, source):
    T = _buffer().lookup(target, source, 10_500_000_000, 0.0)
    H = np.linalg.inv(_H_to_root(target)) @ _H_to_root(source)
    for p in ([0, 0, 0], [1.0, -2.0, 3.0], [0.3, 0.1, 2.0]):
        assert np.allclose(_apply(T, p), (H @ [*p, 1.0])[:3], atol=1e-9)


def test_dynamic_transforms_interpolate_and_never_extrapolate():
    buf = TfBuffer(None)
    buf.add(TFMessage(transforms=[_ts("map", "base", (0, 0, 0, 1), (0, 0, 0), sec=1)]), False)
    q90 = (0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    buf.add(TFMessage(transforms=[_ts("map", "base", q90, (2.0, 0, 0), sec=2)]), False)
    T = buf.lookup("map", "base", 1_500_000_000, 0.0)
    # Halfway: 1 m along x and 45 degrees about z, by hand.
    assert np.allclose(_apply(T, [1.0, 0, 0]), [1.0 + math.sqrt(0.5), math.sqrt(0.5), 0.0], atol=1e-9)
    assert np.allclose(_apply(buf.lookup("map", "base", 0, 0.0), [1.0, 0, 0]), [2.0, 1.0, 0.0], atol=1e-9)
    for t_ns in (900_000_000, 2_100_000_000):
        with pytest.raises(TransformUnavailable, match="no extrapolation"):
            buf.lookup("map", "base", t_ns, 0.0)


def test_static_transforms_hold_at_every_stamp():
    buf = TfBuffer(None)
    buf.add(TFMessage(transforms=[_ts("base", "camera", (0, 0, 0, 1), (0, 0, 1.0))]), True)
    for t_ns in (0, 5, 10**18):
        assert np.allclose(_apply(buf.lookup("base", "camera", t_ns, 0.0), [0, 0, 0]), [0, 0, 1.0])


@pytest.mark.parametrize("xyzw,xyz", [((float("nan"), 0, 0, 1), (0, 0, 0)), ((0, 0, 0, 1), (float("inf"), 0, 0)),
                                      ((0, 0, 0, 0), (0, 0, 0))], ids=["nan_rotation", "inf_translation", "zero_q"])
def test_non_finite_transforms_are_refused_and_the_good_one_stays(xyzw, xyz):
    bad = []
    buf = _buffer(bad)
    before = _apply(buf.lookup("map", "camera", 0, 0.0), [0, 0, 1.0])
    buf.add(TFMessage(transforms=[_ts("base_link", "camera", xyzw, xyz, sec=12)]), False)
    assert len(bad) == 1 and bad[0][0] == "transform" and "camera" in bad[0][1]
    assert np.allclose(_apply(buf.lookup("map", "camera", 0, 0.0), [0, 0, 1.0]), before)


def test_unknown_and_disconnected_frames_fail_after_the_timeout_with_the_reason():
    buf = _buffer()
    t0 = time.monotonic()
    with pytest.raises(TransformUnavailable, match="unknown frame 'world'"):
        buf.lookup("world", "camera", 0, 0.3)
    assert 0.25 <= time.monotonic() - t0 < 2.0
    buf.add(TFMessage(transforms=[_ts("elsewhere", "thing", (0, 0, 0, 1), (0, 0, 0))]), True)
    with pytest.raises(TransformUnavailable, match="not connected"):
        buf.lookup("thing", "camera", 0, 0.0)


def test_over_dds_a_late_buffer_gets_tf_static_and_waits_for_tf():
    rclpy.init()
    try:
        pub_node, sub_node = rclpy.create_node("tf_pub"), rclpy.create_node("tf_sub")
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        static = pub_node.create_publisher(TFMessage, "/tf_static", latched)
        dynamic = pub_node.create_publisher(TFMessage, "/tf", 10)
        static.publish(TFMessage(transforms=[_ts("base_link", "camera", *TREE["camera"][1:])]))
        buf = TfBuffer(sub_node)  # joins after the static transform was sent
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        end = time.monotonic() + 10
        while time.monotonic() < end and dynamic.get_subscription_count() == 0:
            executor.spin_once(timeout_sec=0.05)
        base = pub_node.get_clock().now().nanoseconds // 10**9  # stamps near the node's clock, as a robot sends
        for sec in (1, 2):
            dynamic.publish(TFMessage(transforms=[_ts("map", "base_link", (0, 0, 0, 1), (float(sec), 0, 0),
                                                      sec=base + sec)]))
        found = None
        while time.monotonic() < end and found is None:
            executor.spin_once(timeout_sec=0.05)
            try:
                found = buf.lookup("map", "camera", (base + 1) * 10**9 + 500_000_000, 0.0)
            except TransformUnavailable:
                pass
        assert found is not None, "no transform arrived over DDS"
        H = _H((0, 0, 0, 1), (1.5, 0, 0)) @ _H(*TREE["camera"][1:])
        assert np.allclose(_apply(found, [0, 0, 2.0]), (H @ [0, 0, 2.0, 1])[:3], atol=1e-9)
        pub_node.destroy_node()
        sub_node.destroy_node()
    finally:
        rclpy.shutdown()


def test_a_far_stamp_or_a_loop_is_refused_counted_and_never_stops_the_next_lookup():
    """One /tf message stamped at sec 2**31 - 1 pushed every later sample out of the cache, and one making map a
    child of the camera made every lookup a loop: both are refused now, and the stream goes on."""
    bad = []
    now = [10 * 10**9]
    buf = TfBuffer(None, on_bad=lambda r, t: bad.append((r, t)), now_ns=lambda: now[0])
    stream = lambda sec: buf.add(TFMessage(transforms=[_ts(p, c, q, t, sec=sec) for c, (p, q, t) in TREE.items()]),
                                 False)  # noqa: E731
    stream(10)
    buf.add(TFMessage(transforms=[_ts("map", "camera", (0, 0, 0, 1), (9, 9, 9), sec=2**31 - 1)]), False)
    buf.add(TFMessage(transforms=[_ts("camera", "map", (0, 0, 0, 1), (0, 0, 0), sec=10, nanosec=5)]), False)
    assert [r for r, _ in bad] == ["transform", "transform"]
    assert "from the node's clock" in bad[0][1] and "loop" in bad[1][1]
    now[0] = 11 * 10**9
    stream(11)  # the stream goes on, and a stamp between its samples is found as before
    T = buf.lookup("map", "camera", 10_500_000_000, 0.0)
    H = _H_to_root("camera")
    assert np.allclose(_apply(T, [1.0, 2.0, 3.0]), (H @ [1.0, 2.0, 3.0, 1.0])[:3], atol=1e-9)
    # A clock of 0 (sim time before /clock) checks no stamp.
    TfBuffer(None, now_ns=lambda: 0).add(TFMessage(transforms=[_ts("a", "b", (0, 0, 0, 1), (0, 0, 0), sec=5)]), False)
