"""Soak: the node as launched (its own process, real DDS) under a 60 fps RGB-D stream with bad
messages interleaved, every output subscribed. Not a CI test: it runs for minutes.

    python bench/bench_soak.py [--minutes 10] [--fps 60] [--bad-every 7] [--preset cpu-lite]
    python bench/bench_soak.py --surfaces [--minutes 10] [--bad-period 0.25]   # two cameras, memory, new surfaces

Reports crashes (the node process must still be alive at the end), the node's RSS over time
(growth after a warm-up), and every bad message sent against the bad_input counters the node
reports on /diagnostics. Writes JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CAMERA = r"""
import sys, time, json, rclpy, numpy as np
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image, CameraInfo, CompressedImage
from std_msgs.msg import String
from std_msgs.msg import Header
from textregion_ros.ros.convert import array_to_image, camera_frame
from textregion_ros.eval.scene import make_scene
seconds, fps, bad_every = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rclpy.init(); n = rclpy.create_node("soak_camera", namespace="/soak")
pi = n.create_publisher(Image, "image", qos_profile_sensor_data)
pd = n.create_publisher(Image, "depth", qos_profile_sensor_data)
pc = n.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
pq = n.create_publisher(String, "query", 10)
s = make_scene(); depth = np.nan_to_num(s.depth_m, nan=0.0).astype(np.float32)
while pi.get_subscription_count() == 0 or pq.get_subscription_count() == 0: time.sleep(0.05)
pq.publish(String(data="red mug")); time.sleep(0.5)
sent = {}
def bad(i):
    kind = ["bad_stamp", "unsupported_encoding", "bad_step", "image_too_small", "camera_info", "query",
            "depth_bad_stamp", "future_stamp"][i % 8]
    if kind == "camera_info":
        info = CameraInfo(); info.k = [float("inf")] * 9; pc.publish(info)
    elif kind == "query":
        pq.publish(String(data=" ; ;; "))
    elif kind == "depth_bad_stamp":
        d = array_to_image(np.ones((4, 4), np.float32), "32FC1"); d.header.stamp.sec = -3; pd.publish(d)
    else:
        m = array_to_image(s.rgb if kind != "image_too_small" else s.rgb[:8, :8], "rgb8")
        m.header.stamp = n.get_clock().now().to_msg()
        if kind == "bad_stamp": m.header.stamp.sec = -1
        if kind == "unsupported_encoding": m.encoding = "rgb9"
        if kind == "bad_step": m.step = 10
        if kind == "future_stamp": m.header.stamp.sec += 86400
        pi.publish(m)
    sent[kind] = sent.get(kind, 0) + 1
end = time.monotonic() + seconds; period = 1.0 / fps; t = time.monotonic(); i = 0; frames = 0
while time.monotonic() < end:
    m, d, info = camera_frame(s.rgb, s.K, Header(stamp=n.get_clock().now().to_msg(), frame_id="cam"), depth)
    pc.publish(info); pd.publish(d); pi.publish(m); frames += 1
    i += 1
    if i % bad_every == 0:
        time.sleep(0.002); bad(i // bad_every)
    t += period; time.sleep(max(0.0, t - time.monotonic()))
print(json.dumps({"frames": frames, "bad": sent}))
"""


def rss_kinds(pid: int) -> dict:
    """RssAnon / RssShmem / RssFile in kB from /proc/<pid>/status (Linux; empty elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f if line.startswith("Rss"))}
    except (OSError, ValueError):
        return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--fps", type=float, default=60)
    ap.add_argument("--bad-every", type=int, default=7)
    ap.add_argument("--preset", default="cpu-lite")
    ap.add_argument("--warmup", type=float, default=60, help="seconds before RSS growth is measured")
    ap.add_argument("--surfaces", action="store_true",
                    help="two cameras, memory on, a hostile client on the new surfaces (soak_surfaces.py)")
    ap.add_argument("--bad-period", type=float, default=0.25, help="with --surfaces: seconds between bad inputs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.surfaces:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(ROOT, "config", "fastdds_localhost.xml"))
        os.environ.setdefault("ROS_DOMAIN_ID", "76")
        args.fps = args.fps if args.fps != 60 else 30.0  # two cameras at 30 fps
        from soak_surfaces import main_surfaces
        return main_surfaces(args)
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(ROOT, "config", "fastdds_localhost.xml"))
    os.environ.setdefault("ROS_DOMAIN_ID", "77")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    node = subprocess.Popen([sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "-r", "__ns:=/soak",
                             "--params-file", os.path.join(ROOT, "config", "perceive.yaml"),
                             "-p", f"preset:={args.preset}", "-p", "random_weights:=true",
                             "-p", "pred_iou_thresh:=0.0", "-p", "stability_score_thresh:=0.0",
                             "-p", "max_masks:=24"], env=env, stderr=subprocess.PIPE, text=True)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    import textregion_ros.msg as trmsg
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray
    rclpy.init()
    sub = rclpy.create_node("soak_outputs", namespace="/soak")
    got: Counter = Counter()
    points = []
    last_diag = {}
    for name, typ in (("regions", trmsg.RegionArray), ("instance_mask", Image), ("grounded", trmsg.GroundedRegion),
                      ("grounded_all", trmsg.GroundedRegionArray), ("grounded_point", PointStamped),
                      ("overlay", Image), ("markers", MarkerArray)):
        sub.create_subscription(typ, name, lambda m, n=name: got.update([n]), 5)

    def on_regions(m):
        points.append(any(np.isfinite(r.centroid.z) for r in m.regions))
    sub.create_subscription(trmsg.RegionArray, "regions", on_regions, 5)

    def on_diag(m):
        for st in m.status:
            if "soak" in st.name:
                last_diag.clear()
                last_diag.update({kv.key: kv.value for kv in st.values})
    sub.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    proc = psutil.Process(node.pid)
    deadline = time.monotonic() + 300
    while not last_diag and time.monotonic() < deadline and node.poll() is None:  # the node is up
        rclpy.spin_once(sub, timeout_sec=0.2)
    seconds = args.minutes * 60
    cam = subprocess.Popen([sys.executable, "-c", CAMERA, str(seconds), str(args.fps), str(args.bad_every)],
                           env=env, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    rss, kinds = [], []
    while cam.poll() is None:
        rclpy.spin_once(sub, timeout_sec=0.2)
        if node.poll() is not None:
            break
        if not rss or time.monotonic() - rss[-1][0] > 5:
            rss.append((time.monotonic() - t0, proc.memory_info().rss))
            kinds.append((time.monotonic() - t0, rss_kinds(node.pid)))
    end_wait = time.monotonic() + 15
    while time.monotonic() < end_wait:
        rclpy.spin_once(sub, timeout_sec=0.2)
    alive = node.poll() is None
    cam_out = json.loads(cam.stdout.read().strip().splitlines()[-1]) if cam.returncode == 0 else {}
    sent = cam_out.get("bad", {})
    counted = {k: int(last_diag.get(f"bad_input/{k}", 0)) for k in sent}
    after = [r for t, r in rss if t >= args.warmup]
    report = {
        "preset": args.preset, "minutes": args.minutes, "fps": args.fps, "frames_sent": cam_out.get("frames"),
        "node_alive_at_end": alive, "processed": int(last_diag.get("processed", 0)),
        "outputs_received": dict(got), "frames_with_3d": f"{sum(points)}/{len(points)}",
        "rss_mb_after_warmup_first": after[0] / 1e6 if after else None,
        "rss_mb_max_after_warmup": max(after) / 1e6 if after else None,
        "rss_growth_mb_after_warmup": (max(after) - after[0]) / 1e6 if after else None,
        "bad_sent": sent, "bad_counted": counted, "every_bad_counted": all(counted[k] >= v for k, v in sent.items()),
        "errors_inference": int(last_diag.get("errors/inference", 0)),
        "images_received_by_node": int(last_diag.get("received", 0)),
        "images_sent": (cam_out.get("frames") or 0) + sum(v for k, v in sent.items()
                                                          if k not in ("camera_info", "query", "depth_bad_stamp")),
        "rss_mb_samples": [round(r / 1e6) for t, r in rss[::12]],
        # Frames make transient peaks (working memory of one frame); growth is judged on the floor:
        # the minimum RSS of each minute after warm-up, first minute against last.
        "rss_floor_mb_by_minute": [round(min(r for t, r in rss if m * 60 <= t < (m + 1) * 60) / 1e6)
                                   for m in range(int(args.warmup // 60), int(seconds // 60))
                                   if any(m * 60 <= t < (m + 1) * 60 for t, _ in rss)],
        "dropped_stale": int(last_diag.get("dropped_stale", 0)), "dropped_old": int(last_diag.get("dropped_old", 0)),
    }
    # RSS counts the Fast DDS shared-memory segments as their pages are first touched (the node's own
    # 64 MB segment and each peer's it reads from): that part rises to the segment sizes and stops. A leak
    # shows in the anonymous part (the heap and torch), so each part gets its own floor per minute.
    for part in ("RssAnon", "RssShmem", "RssFile"):
        report[f"{part}_floor_mb_by_minute"] = [
            round(min(k[part] for t, k in kinds if m * 60 <= t < (m + 1) * 60 and part in k) / 2**10)
            for m in range(int(args.warmup // 60), int(seconds // 60))
            if any(m * 60 <= t < (m + 1) * 60 and part in k for t, k in kinds)]
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    node.terminate()
    node.wait(30)
    sub.destroy_node()
    rclpy.shutdown()
    return 0 if alive and report["every_bad_counted"] else 1


if __name__ == "__main__":
    sys.exit(main())
