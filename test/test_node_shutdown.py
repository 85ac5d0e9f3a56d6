"""Ctrl-C (SIGINT) ends the node cleanly and quietly: while models load, and while a frame is in flight."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from ros_harness import ROOT, YAML

NODE = [sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "-r", "__ns:=/shut", "--params-file", YAML,
        "-p", "preset:=cpu-lite", "-p", "random_weights:=true", "-p", "pred_iou_thresh:=0.0",
        "-p", "stability_score_thresh:=0.0"]


def start():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    p = subprocess.Popen(NODE, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    t = threading.Thread(target=lambda: lines.extend(iter(p.stderr.readline, "")), daemon=True)
    t.start()
    return p, lines, t


def wait_for(lines, text, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(text in line for line in lines):
            return True
        time.sleep(0.02)
    return False


def test_ctrl_c_while_models_load_is_quiet():
    p, lines, t = start()
    assert wait_for(lines, "loading models", 60)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    rc = p.wait(60)
    t.join(5)
    err = "".join(lines)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]


def test_ctrl_c_while_a_frame_is_in_flight_is_quiet():
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    import textregion_ros.msg as trmsg
    from textregion_ros.ros.convert import array_to_image
    from textregion_ros.scene import make_scene

    p, lines, t = start()
    rclpy.init()
    node = rclpy.create_node("shutdown_tester", namespace="/shut")
    try:
        got = []
        node.create_subscription(trmsg.RegionArray, "regions", got.append, 5)
        pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
        assert wait_for(lines, "ready", 120), "".join(lines)[-2000:]
        end = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        rgb = make_scene().rgb
        m = array_to_image(rgb, "rgb8")
        m.header.stamp = node.get_clock().now().to_msg()
        pub.publish(m)
        time.sleep(0.8)  # a cpu-lite frame takes over a second here: this lands inside it
        p.send_signal(signal.SIGINT)
        rc = p.wait(60)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    t.join(5)
    err = "".join(lines)
    assert rc == 0, err[-3000:]
    for bad in ("Traceback", "frame failed", "context is invalid", "publishing failed"):
        assert bad not in err, err[-3000:]
    assert np.isfinite(rc)
