"""A running textregion node plus a tester node, both on real rclpy / Fast DDS over loopback."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import defaultdict
from typing import Callable, Dict, List

import numpy as np
import rclpy
import torch
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray
from diagnostic_msgs.msg import DiagnosticArray

import textregion_ros.msg as trmsg
from textregion_ros.ros.convert import array_to_image
from textregion_ros.ros.node import TextRegionNode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML = os.path.join(ROOT, "config", "perceive.yaml")
OUTPUTS = {"regions": trmsg.RegionArray, "instance_mask": Image, "grounded": trmsg.GroundedRegion,
           "grounded_all": trmsg.GroundedRegionArray, "grounded_point": PointStamped, "overlay": Image,
           "markers": MarkerArray, "grounded_cloud": PointCloud2, "grounded_box": trmsg.GroundedBox,
           "grounded_pose": PoseStamped}

# The node starts from config/perceive.yaml with only the model/preset overridden for speed. Random
# SAM2 heads predict IoU and stability far below the real thresholds, so those two are opened as well
# (otherwise every frame would have zero regions and nothing downstream would be exercised).
# max_age is off: on a 2-core machine the node, its test client and their shared GIL can hold a frame
# past the default 1 s before the node takes it, and the test would wait for a frame dropped as old.
# test_sim_time_and_max_age sets max_age itself.
TEST_OVERRIDES = [Parameter("preset", value="cpu-lite"), Parameter("random_weights", value=True),
                  Parameter("pred_iou_thresh", value=0.0), Parameter("stability_score_thresh", value=0.0),
                  Parameter("max_age", value=0.0)]


def stamp_key(header):
    return header.stamp.sec, header.stamp.nanosec


def header_of(msg):
    return msg.header if hasattr(msg, "header") else msg.markers[0].header  # MarkerArray has none


class Harness:
    def __init__(self, namespace: str = "/tr", extra=(), pipeline=None, camera_qos=qos_profile_sensor_data,
                 subscribe: bool = True):
        # Random weights from a fixed seed: what the models make of a scene must not depend on which tests
        # ran before and drew from the global generator.
        torch.manual_seed(0)
        self.node = TextRegionNode(pipeline=pipeline, namespace=namespace,
                                   cli_args=["--ros-args", "--params-file", YAML],
                                   parameter_overrides=TEST_OVERRIDES + list(extra))
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS, self.node.last_failure
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        self.tester = rclpy.create_node("tester", namespace=namespace)
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.got: Dict[str, List] = defaultdict(list)
        self.got_at: Dict[str, List[float]] = defaultdict(list)  # wall-clock receipt time of each message
        for name, typ in (OUTPUTS.items() if subscribe else ()):
            self.tester.create_subscription(typ, name, lambda m, n=name: self._receive(n, m), 10)
        self.tester.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.got["diag"].append(m), 10)
        self.pub_image = self.tester.create_publisher(Image, "image", camera_qos)
        self.pub_compressed = self.tester.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
        self.pub_depth = self.tester.create_publisher(Image, "depth", qos_profile_sensor_data)
        self.pub_info = self.tester.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.pub_query = self.tester.create_publisher(String, "query", 10)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        assert self.wait(lambda: (self.pub_image.get_subscription_count() > 0
                                  or self.pub_compressed.get_subscription_count() > 0)
                         and self.pub_query.get_subscription_count() > 0
                         and (not subscribe or all(self.node.count_subscribers(f"{namespace}/{n}") for n in OUTPUTS)),
                         30)

    def _receive(self, name, msg):
        self.got_at[name].append(time.time())
        self.got[name].append(msg)

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        self.tester.destroy_node()

    @staticmethod
    def wait(cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.02)
        return False

    def wait_idle(self, timeout: float = 60.0):
        """With cpu-lite a frame takes seconds; one sent meanwhile would exceed max_age and be dropped.
        Nothing waiting, nothing in inference, nothing being published (the node's idle())."""
        assert self.wait(self.node.parts.idle, timeout)

    def wait_text(self, timeout: float = 120.0):
        """Vocabulary and standing queries are embedded on the node's text thread; wait until it is done."""
        assert self.wait(self.node.parts.text_idle, timeout)

    def now(self):
        return self.tester.get_clock().now().to_msg()

    def send(self, rgb: np.ndarray, depth=None, K=None, stamp=None, frame_id="camera_color_optical_frame",
             depth_stamp=None, encoding="rgb8", wait_idle=True):
        if wait_idle:
            self.wait_idle()
        stamp = stamp or self.now()
        if K is not None:
            info = CameraInfo()
            info.header.stamp, info.header.frame_id = stamp, frame_id
            info.height, info.width = rgb.shape[:2]
            info.k = [float(v) for v in K.flatten()]
            self.pub_info.publish(info)
        if depth is not None:
            d = array_to_image(depth, "32FC1" if depth.dtype == np.float32 else "16UC1")
            d.header.stamp, d.header.frame_id = depth_stamp or stamp, frame_id
            # Best effort, ~1 MB: on a loaded machine it can be lost or arrive after the image is taken,
            # and the frame then has no 3D. Publish again until the node holds it (a depth the node
            # refuses, in hostile tests, just costs the wait).
            key = d.header.stamp.sec * 10**9 + d.header.stamp.nanosec
            for _ in range(3):
                self.pub_depth.publish(d)
                if self.wait(lambda: self.node.parts.has_depth(key), 3.0):
                    break
        img = array_to_image(rgb, encoding)
        img.header.stamp, img.header.frame_id = stamp, frame_id
        self.publish_delivered(self.pub_image, img)
        return img.header

    def publish_delivered(self, pub, msg, tries: int = 3):
        """Camera topics are best effort, and a ~1 MB sample can be lost on a loaded machine: publish
        again (the same message, same stamp) until the node has received it."""
        for _ in range(tries):
            before = self.node.stats.snapshot().get("received", 0)
            pub.publish(msg)
            if self.wait(lambda b=before: self.node.stats.snapshot().get("received", 0) > b, 5.0):
                return
        raise AssertionError("the node never received the frame")

    def output(self, topic: str, header, timeout: float = 60.0):
        key = stamp_key(header)
        found = []
        self.wait(lambda: found.extend(m for m in list(self.got[topic]) if stamp_key(header_of(m)) == key) or found,
                  timeout)
        return found[0] if found else None

    def query(self, text: str):
        self.pub_query.publish(String(data=text))

    def latched_active_query(self, timeout=5.0):
        """What a subscriber that joins now receives on the latched topic.

        The late joiner is its own node, spun here: destroying a subscription of a node that the
        shared executor is spinning in another thread races the executor and can stop it.
        """
        seen = []
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        late = rclpy.create_node("late_joiner", namespace=self.tester.get_namespace())
        try:
            late.create_subscription(String, "active_query", lambda m: seen.append(m.data), qos)
            end = time.monotonic() + timeout
            while not seen and time.monotonic() < end:
                rclpy.spin_once(late, timeout_sec=0.1)
        finally:
            late.destroy_node()
        return seen[-1] if seen else None


@contextlib.contextmanager
def running_harness(namespace: str = "/tr", **kwargs):
    """rclpy up, one Harness, and both torn down: what each node test module's fixture needs."""
    rclpy.init()
    harness = Harness(namespace=namespace, **kwargs)
    try:
        yield harness
    finally:
        harness.close()
        rclpy.shutdown()
