"""Node benchmark: frames per second, latency and ROS overhead of the real node over DDS.

    python bench/bench_node.py [--preset cpu-lite] [--seconds 60] [--fps 30]

A camera process publishes image + depth + camera_info at --fps on loopback; every output topic
has a subscriber (so everything is computed). The node reports, per processed frame, the time in
Pipeline.process and the time around it (image conversion, depth matching, host transfers, message
building, publishing): that difference is the ROS overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CAMERA = r"""
import sys, time, rclpy, numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, CameraInfo
from textregion_ros.ros.convert import array_to_image
from textregion_ros.scene import make_scene
rclpy.init(); n = rclpy.create_node("camera", namespace="/tr")
pi = n.create_publisher(Image, "image", qos_profile_sensor_data)
pd = n.create_publisher(Image, "depth", qos_profile_sensor_data)
pc = n.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
s = make_scene(); depth = np.nan_to_num(s.depth_m, nan=0.0).astype(np.float32)
while pi.get_subscription_count() == 0: time.sleep(0.05)
end = time.monotonic() + float(sys.argv[1]); period = 1.0 / float(sys.argv[2]); t = time.monotonic()
while time.monotonic() < end:
    stamp = n.get_clock().now().to_msg()
    info = CameraInfo(); info.header.stamp = stamp; info.header.frame_id = "cam"; info.k = s.K.flatten().tolist()
    d = array_to_image(depth, "32FC1"); d.header = info.header
    m = array_to_image(s.rgb, "rgb8"); m.header = info.header
    pc.publish(info); pd.publish(d); pi.publish(m)
    t += period; time.sleep(max(0.0, t - time.monotonic()))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-lite")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "fastdds_localhost.xml"))
    import rclpy
    from rclpy.parameter import Parameter

    from ros_harness import Harness
    rclpy.init()
    h = Harness(extra=[Parameter("preset", value=args.preset), Parameter("max_masks", value=24)])
    h.query("red mug")
    cam = subprocess.Popen([sys.executable, "-c", CAMERA, str(args.seconds), str(args.fps)])
    time.sleep(min(10.0, args.seconds / 4))  # warm-up frames are not counted
    n0 = len(h.got["regions"])
    snap0 = h.node.stats.snapshot()
    t0 = time.monotonic()
    cam.wait()
    elapsed = time.monotonic() - t0
    snap = h.node.stats.snapshot()
    processed = snap["processed"] - snap0["processed"]
    lat = sorted(h.node.stats.latency)
    report = {"preset": args.preset, "camera_fps": args.fps, "window_s": elapsed,
              "received": snap["received"] - snap0["received"], "processed": processed,
              "processed_fps": processed / elapsed, "regions_msgs": len(h.got["regions"]) - n0,
              "latency_mean_s": float(np.mean(lat)), "latency_p95_s": float(np.percentile(lat, 95)),
              "pipeline_mean_s": snap["pipeline_mean_s"], "node_compute_mean_s": snap["compute_mean_s"],
              "ros_overhead_mean_s": snap["ros_overhead_mean_s"], "dropped_stale": snap.get("dropped_stale", 0)}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    h.close()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
