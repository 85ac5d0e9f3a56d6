"""Several cameras on one set of models, over real DDS: two named cameras with different generated scenes
(different depth), each with its own inputs, outputs, counters and 3D; grounded_best over both; and the
default single camera keeps today's topic names."""
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
import rclpy
import torch
from geometry_msgs.msg import PointStamped
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

import textregion_ros.msg as trmsg
from ros_harness import TEST_OVERRIDES, YAML, Harness, stamp_key
from textregion_ros.ros.convert import array_to_image
from textregion_ros.ros.node import TextRegionNode
from textregion_ros.ros.outputs import FRAME_OUTPUTS
from textregion_ros.eval.scene import make_scene

CAMERAS = ("left", "right")
NS = "/cams"


wait = Harness.wait


class TwoCameras:
    def __init__(self):
        torch.manual_seed(0)
        self.node = TextRegionNode(namespace=NS, cli_args=["--ros-args", "--params-file", YAML],
                                   parameter_overrides=TEST_OVERRIDES + [
                                       Parameter("cameras", value=list(CAMERAS)),
                                       Parameter("best_window", value=3600.0),
                                       Parameter("force_masks", value=6)])
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS, self.node.last_failure
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        self.tester = rclpy.create_node("cams_tester", namespace=NS)
        self.got = defaultdict(list)
        self.pubs = {}
        for cam in CAMERAS:
            for name, typ in (("regions", trmsg.RegionArray), ("grounded", trmsg.GroundedRegion)):
                self.tester.create_subscription(typ, f"{cam}/{name}", lambda m, k=f"{cam}/{name}": self.got[k].append(m), 10)
            self.pubs[cam] = {n: self.tester.create_publisher(t, f"{cam}/{n}", qos_profile_sensor_data)
                              for n, t in (("image", Image), ("depth", Image), ("camera_info", CameraInfo))}
        self.tester.create_subscription(trmsg.GroundedRegion, "grounded_best", lambda m: self.got["best"].append(m), 10)
        self.tester.create_subscription(PointStamped, "grounded_best_point",
                                        lambda m: self.got["best_point"].append(m), 10)
        self.pub_query = self.tester.create_publisher(String, "query", 10)
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        assert wait(lambda: all(self.pubs[c]["image"].get_subscription_count() for c in CAMERAS)
                    and self.node.count_subscribers(f"{NS}/grounded_best") > 0, 30)

    def send(self, cam, scene, depth_scale=1.0, stamp=None):
        stamp = stamp or self.tester.get_clock().now().to_msg()
        frame_id = f"{cam}_optical_frame"
        info = CameraInfo()
        info.header.stamp, info.header.frame_id = stamp, frame_id
        info.height, info.width = scene.rgb.shape[:2]
        info.k = [float(v) for v in scene.K.flatten()]
        self.pubs[cam]["camera_info"].publish(info)
        d = array_to_image(np.nan_to_num(scene.depth_m * depth_scale, nan=0.0).astype(np.float32), "32FC1")
        d.header.stamp, d.header.frame_id = stamp, frame_id
        key = stamp.sec * 10**9 + stamp.nanosec
        for _ in range(3):
            self.pubs[cam]["depth"].publish(d)
            if wait(lambda: self.node.parts.has_depth(key, cam), 3.0):
                break
        img = array_to_image(scene.rgb, "rgb8")
        img.header.stamp, img.header.frame_id = stamp, frame_id
        stats = self.node.parts.camera(cam).ctx.stats
        for _ in range(3):
            before = stats.snapshot().get("received", 0)
            self.pubs[cam]["image"].publish(img)
            if wait(lambda: stats.snapshot().get("received", 0) > before, 5.0):
                return img.header
        raise AssertionError(f"{cam} never received the frame")

    def output(self, key, header, timeout=90.0):
        found = []
        wait(lambda: found.extend(m for m in list(self.got[key]) if stamp_key(m.header) == stamp_key(header))
             or found, timeout)
        return found[0] if found else None

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        self.tester.destroy_node()


@pytest.fixture(scope="module")
def two():
    rclpy.init()
    t = TwoCameras()
    try:
        t.pub_query.publish(String(data="red mug"))
        assert wait(lambda: t.node.parts.active_query == "red mug", 30)
        yield t
    finally:
        t.close()
        rclpy.shutdown()


def test_each_camera_publishes_its_own_frame_id_regions_and_3d(two):
    left, right = make_scene(seed=0), make_scene(seed=1, shift=60)
    hl = two.send("left", left)
    wait(two.node.parts.idle, 90)
    hr = two.send("right", right, depth_scale=2.0)  # the right camera sees everything twice as far
    rl, rr = two.output("left/regions", hl), two.output("right/regions", hr)
    assert rl is not None and rr is not None
    assert rl.header.frame_id == "left_optical_frame" and rr.header.frame_id == "right_optical_frame"
    assert rl.frame_kind == rr.frame_kind == "full" and len(rl.regions) and len(rr.regions)
    assert not two.got["right/regions"] or all(stamp_key(m.header) != stamp_key(hl) for m in two.got["right/regions"])
    zl = np.array([r.centroid.z for r in rl.regions if np.isfinite(r.centroid.z)])
    zr = np.array([r.centroid.z for r in rr.regions if np.isfinite(r.centroid.z)])
    assert len(zl) and len(zr)
    # Each camera's 3D comes from its own depth: inside its own depth range, and the right one twice as far.
    for z, scene, scale in ((zl, left, 1.0), (zr, right, 2.0)):
        d = scene.depth_m * scale
        assert (z >= np.nanmin(d) - 1e-3).all() and (z <= np.nanmax(d) + 1e-3).all()
    assert np.median(zr) > 1.5 * np.median(zl)


def test_grounded_best_is_the_better_of_the_two_cameras(two):
    wait(two.node.parts.idle, 90)
    hl = two.send("left", make_scene(seed=2))
    wait(two.node.parts.idle, 90)
    hr = two.send("right", make_scene(seed=3, shift=30), depth_scale=2.0)
    gl, gr = two.output("left/grounded", hl), two.output("right/grounded", hr)
    assert gl is not None and gr is not None
    want = max((gl, gr), key=lambda g: (g.found, g.score))  # the oracle: the cameras' own outputs
    # After the right camera's frame, grounded_best compares it with the left one (the winner's header).
    best = two.output("best", want.header)
    assert best is not None
    assert wait(lambda: stamp_key(two.got["best"][-1].header) == stamp_key(want.header), 30)
    best = two.got["best"][-1]
    assert best.header.frame_id == want.header.frame_id and best.score == pytest.approx(want.score)
    assert best.region.bbox.width == want.region.bbox.width and best.found == want.found
    if best.found:
        point = two.output("best_point", best.header, 10)
        assert point is not None and point.header.frame_id == want.header.frame_id
        assert point.point.z == pytest.approx(want.region.centroid.z, rel=0.2)


def test_a_silent_camera_does_not_slow_the_other_and_bad_input_counts_on_its_own_camera(two):
    wait(two.node.parts.idle, 90)
    right = two.node.parts.camera("right").ctx.stats
    left = two.node.parts.camera("left").ctx.stats
    bad = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10))  # step x height != len(data)
    bad.header.stamp, bad.header.frame_id = two.tester.get_clock().now().to_msg(), "right_optical_frame"
    before_left = sum(v for k, v in left.snapshot().items() if k.startswith("bad_input/"))
    two.pubs["right"]["image"].publish(bad)
    assert wait(lambda: any(k.startswith("bad_input/") and v for k, v in right.snapshot().items()), 10)
    assert sum(v for k, v in left.snapshot().items() if k.startswith("bad_input/")) == before_left
    # The right camera is silent from here: three left frames are each published in about a frame's time.
    times = []
    for i in range(3):
        t0 = time.monotonic()
        h = two.send("left", make_scene(seed=10 + i))
        assert two.output("left/regions", h, 90) is not None
        times.append(time.monotonic() - t0)
        wait(two.node.parts.idle, 90)
    frame_s = mean_pipeline_s(left)
    assert max(times) < 3 * frame_s + 5.0, (times, frame_s)
    # Each camera's /diagnostics entry carries its own counts: the bad input shows on the right one only.
    entries = {c: {kv.key for kv in two.node.parts.camera(c).ctx.stats.message(None, c, "cpu").status[0].values}
               for c in CAMERAS}
    assert any(k.startswith("bad_input/") for k in entries["right"])
    assert not any(k.startswith("bad_input/") for k in entries["left"])


def test_a_camera_that_floods_garbage_is_paused_and_heard_again_and_the_other_keeps_its_subscription(two):
    """A second of only refused frames on the right camera: its image subscription goes (DDS stops delivering
    the flood to the node), counted and logged; it comes back after the pause; the left camera's stays."""
    from textregion_ros.ros.flood_guard import FIRST_PAUSE_S, FLOOD_REFUSED
    right = two.node.parts.camera("right").ctx.stats
    pub, left_pub = two.pubs["right"]["image"], two.pubs["left"]["image"]
    bad = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10))  # step x height != len(data)
    bad.header.frame_id = "right_optical_frame"
    t0 = time.monotonic()
    while pub.get_subscription_count() and time.monotonic() - t0 < 5.0:  # best effort: some may be lost
        bad.header.stamp = two.tester.get_clock().now().to_msg()
        pub.publish(bad)
        time.sleep(1.0 / (4 * FLOOD_REFUSED))
    paused_at = time.monotonic()
    assert pub.get_subscription_count() == 0, "the flooded topic was not paused"
    assert right.snapshot().get("bad_input/image_flood") == 1
    assert left_pub.get_subscription_count() == 1, "the other camera is still heard"
    assert wait(lambda: pub.get_subscription_count() == 1, FIRST_PAUSE_S + 5.0), "not heard again after the pause"
    assert time.monotonic() - paused_at >= FIRST_PAUSE_S - 2.0
    # The node keeps working through it: both cameras' next frames are processed.
    for cam in CAMERAS:
        h = two.send(cam, make_scene(seed=30))
        assert two.output(f"{cam}/regions", h, 90) is not None, cam


def mean_pipeline_s(stats):
    """The camera's mean pipeline time per processed frame, from its cumulative counters."""
    snap = stats.snapshot()
    return snap.get("pipeline_total_s", 0.0) / max(snap.get("processed", 1), 1)


def test_the_default_single_camera_keeps_todays_topic_names(two):
    """A node without the cameras parameter, on the same models: its topics are the outputs table's names
    under the namespace, with no camera level, and no grounded_best."""
    node = TextRegionNode(pipeline=two.node.pipeline, namespace="/single",
                          cli_args=["--ros-args", "--params-file", YAML], parameter_overrides=TEST_OVERRIDES)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.last_failure
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        pubs = {n for n, _ in node.get_publisher_names_and_types_by_node(node.get_name(), "/single")}
        subs = {n for n, _ in node.get_subscriber_names_and_types_by_node(node.get_name(), "/single")}
        want = {f"/single/{r.name}" for r in FRAME_OUTPUTS if r.available()} | {"/single/active_query"}
        assert want <= pubs and not any("grounded_best" in p for p in pubs)
        assert {"/single/image", "/single/depth", "/single/camera_info", "/single/query"} <= subs
        assert not any(p.startswith("/single/") and p.count("/") > 2 and not p.startswith("/single/memory")
                       and "/_action" not in p and "transition_event" not in p for p in pubs), pubs
        assert node.pipeline is two.node.pipeline  # one set of models
    finally:
        node.destroy_node()


def test_the_inference_entry_of_diagnostics_carries_the_cameras_rates(two):
    from textregion_ros.ros.diagnostics import node_status
    h = two.send("left", make_scene(seed=20))
    assert two.output("left/regions", h, 90) is not None
    arr = node_status(two.node.stats, two.node.parts.cameras, two.node.pipeline, "active",
                      two.node.get_clock().now().to_msg(), two.node.get_fully_qualified_name())
    entry = next(s for s in arr.status if s.name.endswith(": inference"))
    values = {kv.key: float(kv.value) for kv in entry.values if kv.key.endswith("_rate_hz")}
    left = two.node.parts.camera("left").ctx.stats.snapshot()
    assert values["processed_rate_hz"] > 0 and values["input_rate_hz"] > 0, (entry.message, values)
    assert values["processed_rate_hz"] >= left["processed_rate_hz"]  # every camera's frames, the left's too
    assert not entry.message.startswith("0.0 Hz processed of 0.0 Hz"), entry.message


def test_the_rendered_rviz_config_shows_topics_this_two_camera_node_publishes(two):
    import os

    import yaml

    from ros_harness import ROOT
    from textregion_ros.ros.rviz_config import render
    with open(os.path.join(ROOT, "config", "perceive.rviz")) as f:
        cfg = yaml.safe_load(render(f.read(), NS, "f", CAMERAS))
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"]
              if "Topic" in d and "/memory/" not in d["Topic"]["Value"]}  # memory is off on this node
    published = {name for name, _ in two.node.get_publisher_names_and_types_by_node("textregion", NS)}
    assert {f"{NS}/{c}/overlay" for c in CAMERAS} <= topics and {f"{NS}/{c}/markers" for c in CAMERAS} <= topics
    assert topics <= published, topics - published
