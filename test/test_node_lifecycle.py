"""The managed node over DDS, driven as `ros2 lifecycle set` drives it: through its standard
change_state / get_state services, in its own process (autostart off), so its memory is its own."""
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

import textregion_ros.msg as trmsg
from textregion_ros.srv import Ground
from ros_harness import ROOT, YAML, stamp_key
from textregion_ros.ros.convert import array_to_image

NS = "/life"


def start_node(*params, ns=NS):
    cmd = [sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "-r", f"__ns:={ns}", "--params-file", YAML,
           "-p", "autostart:=false", "-p", "preset:=cpu-lite"] + [x for p in params for x in ("-p", p)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), PYTHONUNBUFFERED="1")
    p = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(p.stderr.readline, "")), daemon=True).start()
    return p, lines


class Client:
    """A tester node with the lifecycle and parameter clients `ros2 lifecycle` / `ros2 param` use."""

    def __init__(self, ns=NS):
        self.node = rclpy.create_node("lifecycle_tester", namespace=ns)
        self.change = self.node.create_client(ChangeState, "textregion/change_state")
        self.get = self.node.create_client(GetState, "textregion/get_state")
        self.params = self.node.create_client(SetParameters, "textregion/set_parameters")
        self.ground_client = self.node.create_client(Ground, "ground")
        self.got = {"regions": [], "overlay": []}
        self.node.create_subscription(trmsg.RegionArray, "regions", self.got["regions"].append, 10)
        self.node.create_subscription(Image, "overlay", self.got["overlay"].append, 10)
        self.pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)

    def call(self, client, request, timeout=300.0):
        assert client.wait_for_service(60), client.srv_name
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        assert future.done(), f"{client.srv_name} did not answer"
        return future.result()

    def transition(self, tid) -> bool:
        return self.call(self.change, ChangeState.Request(transition=Transition(id=tid))).success

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def set(self, **values):
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        res = self.call(self.params, req).results
        assert all(r.successful for r in res), [r.reason for r in res]

    def ground(self, query="red mug"):
        return self.call(self.ground_client, Ground.Request(query=query), timeout=120.0)

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def send(self, rgb):
        m = array_to_image(rgb, "rgb8")
        m.header.stamp, m.header.frame_id = self.node.get_clock().now().to_msg(), "cam"
        self.pub.publish(m)
        return stamp_key(m.header)

    def output(self, topic, key, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            found = [m for m in self.got[topic] if stamp_key(m.header) == key]
            if found:
                return found[0]
        return None

    def image_readers(self):
        return self.pub.get_subscription_count()


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def life(ros):
    # Random weights with their own defaults (no threshold opened here): every output must show regions.
    p, lines = start_node("random_weights:=true", "max_age:=0.0")
    c = Client()
    try:
        yield p, lines, c
    finally:
        c.node.destroy_node()
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            p.wait(30)


def rss_mb(p):
    return psutil.Process(p.pid).memory_info().rss / 2**20


def test_every_transition_memory_and_publishing(life, scene):
    p, lines, c = life
    assert c.state() == "unconfigured"
    c.spin(1.0)
    rss0 = rss_mb(p)
    assert c.transition(Transition.TRANSITION_CONFIGURE), "".join(lines)[-2000:]
    assert c.state() == "inactive"
    rss1 = rss_mb(p)
    inactive = c.ground()  # nothing runs while inactive: no answer on any frame, and the reason
    assert not inactive.success and "not active" in inactive.message, inactive.message
    # Inactive: models loaded, nobody subscribed to the camera, nothing published.
    c.spin(1.0)
    assert c.image_readers() == 0
    # A parameter changed while inactive applies on activate: a runtime pipeline knob (one mask at most)
    # and a node setting (no overlay).
    c.set(max_masks=1, force_masks=1, publish_overlay=False)
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    assert c.state() == "active"
    end = time.monotonic() + 30
    while c.image_readers() == 0 and time.monotonic() < end:
        c.spin(0.1)
    regions = None
    for _ in range(5):  # best effort: a frame can be lost before discovery settles
        key = c.send(scene.rgb)
        regions = c.output("regions", key, 60)
        if regions is not None:
            break
    assert regions is not None, "".join(lines)[-2000:]
    assert len(regions.regions) == 1, len(regions.regions)
    answer = c.ground()
    assert answer.success and (answer.frame_stamp.sec, answer.frame_stamp.nanosec) == key, answer.message
    c.spin(2.0)
    assert not [m for m in c.got["overlay"] if stamp_key(m.header) == key], "publish_overlay false was ignored"
    c.set(max_masks=24, force_masks=0, publish_overlay=True)
    # Deactivate: the camera subscription goes, frames sent now give nothing.
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    assert c.state() == "inactive"
    c.spin(1.0)
    assert c.image_readers() == 0
    n = len(c.got["regions"])
    for _ in range(3):
        c.send(scene.rgb)
        c.spin(0.5)
    c.spin(2.0)
    assert len(c.got["regions"]) == n, "an inactive node published"
    assert "not active" in c.ground().message
    # Reactivate: it works again, with the restored settings, and never answers on a frame from before.
    assert c.transition(Transition.TRANSITION_ACTIVATE)
    stale = c.ground()
    assert not stale.success and "no camera frame" in stale.message, (stale.success, stale.message)
    end = time.monotonic() + 30
    while c.image_readers() == 0 and time.monotonic() < end:
        c.spin(0.1)
    regions = None
    for _ in range(5):
        key = c.send(scene.rgb)
        regions = c.output("regions", key, 60)
        if regions is not None:
            break
    assert regions is not None and c.output("overlay", key, 20) is not None
    assert len(regions.regions) > 0, "random weights with their default thresholds showed no region"
    assert c.ground().success
    # A frame older than max_age is not answered on, and the reply says why.
    c.set(max_age=0.5)
    c.spin(1.5)
    old = c.ground()
    assert not old.success and "max_age" in old.message, old.message
    c.set(max_age=0.0)
    assert c.transition(Transition.TRANSITION_DEACTIVATE)
    # Cleanup frees the models: RSS falls back by most of what configure added.
    assert c.transition(Transition.TRANSITION_CLEANUP)
    assert c.state() == "unconfigured"
    c.spin(1.0)
    rss2 = rss_mb(p)
    # The first configure also imports sam2 and its config system for good, so the models' share is
    # measured on a second cycle, from the unconfigured state the first cleanup left.
    assert c.transition(Transition.TRANSITION_CONFIGURE)
    rss3 = rss_mb(p)
    assert c.transition(Transition.TRANSITION_CLEANUP)
    c.spin(1.0)
    rss4 = rss_mb(p)
    print(f"RSS (MB): before configure {rss0:.0f}, configured {rss1:.0f}, after cleanup {rss2:.0f}; "
          f"second cycle: configured {rss3:.0f}, after cleanup {rss4:.0f}")
    assert rss1 - rss0 > 300 and rss3 - rss2 > 300, (rss0, rss1, rss2, rss3)
    assert rss3 - rss4 > 0.8 * (rss3 - rss2), (rss2, rss3, rss4)
    assert rss4 < rss2 + 100, ("memory grows with each configure/cleanup cycle", rss2, rss4)
    # Shut down from unconfigured: finalized, and the process leaves with status 0.
    assert c.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert p.wait(30) == 0
    err = "".join(lines)
    assert "Traceback" not in err, err[-3000:]
    # The logs of a clean run: no Python warning, one line per missing optional package and configure, and a
    # shutdown by lifecycle is not called an interrupted start-up.
    python_warnings = [ln for ln in lines if "Warning:" in ln or "warnings.warn(" in ln or ln.startswith("WARNING:")]
    assert not python_warnings, python_warnings
    missing = [ln for ln in lines if "is not installed" in ln]
    assert len(missing) <= 2 and len({ln.split("]: ")[-1] for ln in missing}) <= 1, missing  # two configures
    assert "interrupted during startup" not in err and "shut down" in err, err[-1500:]


def test_configure_without_weights_fails_with_its_reason(ros):
    p, lines = start_node(ns="/life_noweights")
    c = Client(ns="/life_noweights")
    try:
        assert c.state() == "unconfigured"
        t0 = time.monotonic()
        assert not c.transition(Transition.TRANSITION_CONFIGURE)
        elapsed = time.monotonic() - t0
        assert c.state() == "unconfigured"
        err = "".join(lines)
        assert "configure failed" in err and "could not load weights 'openai'" in err, err[-2000:]
        assert elapsed < 60, elapsed
    finally:
        c.node.destroy_node()
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    assert rc == 0


def test_configure_without_exported_graphs_fails_with_the_export_command(ros, tmp_path):
    """encoder_backend onnxruntime with nothing exported: a failed transition that names what is missing and
    the command that makes it, never a silent fallback to torch."""
    p, lines = start_node("random_weights:=true", "mask_source:=superpixels", "encoder_backend:=onnxruntime",
                          f"onnx_dir:={tmp_path}", ns="/life_nographs")
    c = Client(ns="/life_nographs")
    try:
        assert c.state() == "unconfigured"
        assert not c.transition(Transition.TRANSITION_CONFIGURE)
        assert c.state() == "unconfigured"
        err = "".join(lines)
        assert "configure failed" in err and "encoder_backend onnxruntime: no manifest at" in err, err[-2000:]
        assert "textregion-export --units trunk" in err, err[-2000:]
    finally:
        c.node.destroy_node()
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    assert rc == 0
