"""bench_node --cameras N: one node serving N cameras against N nodes of one camera each, in one run.

Each camera is its own process publishing 640x480 rgb8 + 32FC1 depth + camera_info at --fps. The same
--regions are forced as in bench_node. Reported per layout: the nodes' RSS (and, on CUDA, nvidia-smi's
memory for each node process), the processed frames per camera over the window (from each camera's
/diagnostics entry), and the stamp-to-publish latency of each camera's ``regions``; then the ratios
one node / N nodes for memory and total processed fps, and each camera's share of the one node's frames.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from bench_node import CAMERA, gpu_memory_mb, node_command, percentiles


class Layout:
    """Nodes and cameras started together; counts and latencies gathered by one subscriber node."""

    def __init__(self, args, name: str, nodes, env):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        import textregion_ros.msg as trmsg
        from std_msgs.msg import String

        self.args, self.name, self.env = args, name, env
        self.nodes = []  # (namespace, camera names, Popen)
        self.sub = rclpy.create_node(f"bench_{name}")
        self.diag = {}  # status name -> {key: value}
        self.latency = defaultdict(list)
        self.measuring = False
        for ns, cams in nodes:
            cmd = node_command(ns, args) + (["-p", f"cameras:=[{','.join(cams)}]"] if cams else [])
            log = tempfile.NamedTemporaryFile("w+", prefix=f"bench_{name}_", suffix=".log", delete=False)
            self.nodes.append((ns, cams, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
            for cam in cams or ("",):
                topic = f"{ns}/{cam + '/' if cam else ''}regions"
                self.sub.create_subscription(trmsg.RegionArray, topic, lambda m, t=topic: self._on(t, m), 5)
            pub = self.sub.create_publisher(String, f"{ns}/query", 10)
            self.queries = getattr(self, "queries", []) + [pub]
        self.sub.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.cameras = []

    def _on(self, topic, msg):
        if self.measuring:
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            self.latency[topic].append((time.time_ns() - stamp) * 1e-9)

    def _on_diag(self, m):
        for st in m.status:
            self.diag[st.name] = {kv.key: kv.value for kv in st.values}

    def entries(self):
        """status name of each camera -> its diagnostics (a single-camera node's own entry is its camera's)."""
        out = {}
        for ns, cams, _ in self.nodes:
            for cam in cams or ("",):
                key = f"{ns}/textregion: {cam or 'inference'}"
                out[f"{ns}/{cam}" if cam else ns] = self.diag.get(key, {})
        return out

    def spin(self, seconds):
        import rclpy
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.sub, timeout_sec=0.1)

    def start_cameras(self):
        from std_msgs.msg import String
        for pub in self.queries:
            pub.publish(String(data="red mug"))
        for ns, cams, _ in self.nodes:
            for cam in cams or ("",):
                where = f"{ns}/{cam}" if cam else ns
                self.cameras.append(subprocess.Popen([sys.executable, "-c", CAMERA, str(self.args.fps), where],
                                                     env=self.env, stdout=subprocess.PIPE, text=True))

    def rss_mb(self):
        try:
            import psutil
            return [psutil.Process(p.pid).memory_info().rss / 2**20 for _, _, p in self.nodes]
        except Exception:
            return None

    def stop(self):
        for p in self.cameras:
            p.terminate()
        for _, _, p in self.nodes:
            p.terminate()
        for p in self.cameras + [n[2] for n in self.nodes]:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.sub.destroy_node()


def measure(layout: Layout, args) -> dict:
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline and not all(layout.entries().values()):
        layout.spin(0.5)
    layout.start_cameras()
    layout.spin(args.warmup)
    base = {k: dict(v) for k, v in layout.entries().items()}
    layout.measuring = True
    t0 = time.monotonic()
    layout.spin(args.seconds)
    window = time.monotonic() - t0
    layout.measuring = False
    end = layout.entries()
    processed = {k: int(float(end[k].get("processed", 0))) - int(float(base[k].get("processed", 0))) for k in end}
    total = sum(processed.values())
    return {"layout": layout.name, "window_s": round(window, 1), "node_rss_mb": layout.rss_mb(),
            "gpu_mb_nvidia_smi": [gpu_memory_mb(p.pid) for _, _, p in layout.nodes],
            "processed": processed, "processed_fps_total": round(total / window, 3),
            "share": {k: round(v / total, 3) if total else None for k, v in processed.items()},
            "regions_stamp_to_receipt": {k: percentiles(v) for k, v in sorted(layout.latency.items())}}


def run_cameras(args, env) -> dict:
    n = args.cameras
    names = [f"cam{i}" for i in range(n)]
    one = Layout(args, "one_node", [("/bench_multi", names)], env)
    try:
        shared = measure(one, args)
    finally:
        one.stop()
    many = Layout(args, "separate_nodes", [(f"/bench_single{i}", []) for i in range(n)], env)
    try:
        separate = measure(many, args)
    finally:
        many.stop()
    rss = lambda r: sum(r["node_rss_mb"]) if r["node_rss_mb"] else None  # noqa: E731
    gpu = lambda r: sum(g for g in r["gpu_mb_nvidia_smi"] if g) or None  # noqa: E731
    ratios = {"rss_one_over_separate": round(rss(shared) / rss(separate), 3) if rss(shared) and rss(separate)
              else None,
              "gpu_memory_one_over_separate": round(gpu(shared) / gpu(separate), 3) if gpu(shared) and gpu(separate)
              else None,
              "fps_one_over_separate": round(shared["processed_fps_total"] / separate["processed_fps_total"], 3)
              if separate["processed_fps_total"] else None,
              "min_camera_share_one_node": min((s for s in shared["share"].values() if s is not None), default=None)}
    return {"cameras": n, "preset": args.preset, "device": args.device, "camera_fps": args.fps,
            "regions_forced": args.regions, "one_node": shared, "separate_nodes": separate, "ratios": ratios}


# A hostile camera: camera-sized Image messages that are each refused for another reason, at --flood-fps.
FLOOD = r"""
import sys, time, rclpy, numpy as np, signal
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
fps = float(sys.argv[1]); stop = []
rclpy.init(); n = rclpy.create_node("bench_flood", namespace=sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
pub = n.create_publisher(Image, "image", qos_profile_sensor_data)
from textregion_ros.ros.convert import packed
# Built once: filling a 0.9 MB field from bytes would cost this process a core (rclpy converts it in Python),
# and on a 2-core machine that core is the node's. Only the stamps change per message.
payload = packed(np.random.default_rng(0).integers(0, 255, 640 * 480 * 3, dtype=np.uint8))
def make(kind):
    m = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=payload)
    m.header.frame_id = "flood_optical"
    if kind == 0: m.step = 7  # step x height is not the payload
    elif kind == 1: m.encoding = "32FC1"  # not a colour encoding
    elif kind == 2: m.width, m.height, m.step = 100000, 100000, 300000  # an absurd size
    elif kind == 4: m.header.frame_id = ""  # nowhere to place its outputs
    return m
kinds = [make(k) for k in range(5)]
def garbage(k):
    m = kinds[k % 5]
    m.header.stamp = n.get_clock().now().to_msg()
    if k % 5 == 3: m.header.stamp.sec += 3600  # an hour ahead of the node's clock
    return m
while pub.get_subscription_count() == 0 and not stop: time.sleep(0.05)
period = 1.0 / fps; t = time.monotonic(); sent = 0
while not stop:
    pub.publish(garbage(sent)); sent += 1
    t += period; time.sleep(max(0.0, t - time.monotonic()))
print(sent)
"""


def cpu_s(pid: int) -> float:
    import psutil
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def run_flood(args, env) -> dict:
    """One node, two cameras: the good one at --fps throughout; the other silent, then flooded with garbage at
    --flood-fps, in alternating windows of --seconds (--rounds of each). The good camera's processed frames per
    second in the flooded windows over the quiet ones is the ratio reported (issue: >= 0.9)."""
    good, bad = "cam0", "cam1"
    layout = Layout(args, "flood", [("/bench_flood", [good, bad])], env)
    windows = []
    try:
        deadline = time.monotonic() + args.startup_timeout
        while time.monotonic() < deadline and not all(layout.entries().values()):
            layout.spin(0.5)
        for pub in layout.queries:
            from std_msgs.msg import String
            pub.publish(String(data="red mug"))
        layout.cameras.append(subprocess.Popen([sys.executable, "-c", CAMERA, str(args.fps), f"/bench_flood/{good}"],
                                               env=env, stdout=subprocess.PIPE, text=True))
        layout.spin(args.warmup)
        key = f"/bench_flood/{good}"
        for _ in range(args.rounds):
            for flooded in (False, True):
                flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(args.flood_fps), f"/bench_flood/{bad}"],
                                         env=env, stdout=subprocess.PIPE, text=True) if flooded else None
                layout.spin(3.0 if flooded else 0.0)  # the flood's publisher matched before the window opens
                cpu0 = [cpu_s(p.pid) for p in (layout.nodes[0][2], flood) if p is not None]
                before, t0 = dict(layout.entries()[key]), time.monotonic()
                bad0 = layout.entries()[f"/bench_flood/{bad}"]
                layout.spin(args.seconds)
                after, window = dict(layout.entries()[key]), time.monotonic() - t0
                cpu1 = [cpu_s(p.pid) for p in (layout.nodes[0][2], flood) if p is not None]
                bad1 = layout.entries()[f"/bench_flood/{bad}"]
                if flood is not None:
                    flood.terminate()
                    flood.wait(30)
                refused = sum(float(v) for k, v in bad1.items() if k.startswith("bad_input/")) - \
                    sum(float(v) for k, v in bad0.items() if k.startswith("bad_input/"))
                windows.append({"flooded": flooded, "window_s": round(window, 1),
                                "good_processed": int(float(after.get("processed", 0)) -
                                                      float(before.get("processed", 0))),
                                "garbage_refused": int(refused),
                                # CPU seconds a second of the window: the node's process, and the flood's own
                                "node_cpu_per_s": round((cpu1[0] - cpu0[0]) / window, 3),
                                "flood_process_cpu_per_s": round((cpu1[1] - cpu0[1]) / window, 3) if flooded
                                else None})
    finally:
        layout.stop()
    rate = lambda fl: sum(w["good_processed"] for w in windows if w["flooded"] == fl) / \
        sum(w["window_s"] for w in windows if w["flooded"] == fl)  # noqa: E731
    quiet, flooded = rate(False), rate(True)
    return {"preset": args.preset, "device": args.device, "camera_fps": args.fps, "flood_fps": args.flood_fps,
            "regions_forced": args.regions, "windows": windows, "good_fps_quiet": round(quiet, 4),
            "good_fps_flooded": round(flooded, 4), "flooded_over_quiet": round(flooded / quiet, 3) if quiet else None}
