"""bench_soak --surfaces: the node as launched with two cameras and the object memory, every output
subscribed, while a hostile client hits the new surfaces every --bad-period seconds, in turn: garbage images
on one camera, a far-future and a loop transform on /tf, a burst of 20 calls to find / memory/save /
memory/clear / ground, a refused parameter set (range, type, read-only), a garbage query.

Reported: the node alive at the end, RSS (the floor of each minute after warm-up), what was sent against
what the node counted, each camera's regions in the last two minutes, and whether the memory file the node
saved at the end loads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

import psutil

from bench_node import CAMERA

CAMERAS = ("head", "wrist")
NS = "/soak2"


def node_command(args, memory_file: str) -> list:
    return [sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}",
            "--params-file", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                          "config", "perceive.yaml"),
            "-p", f"preset:={args.preset}", "-p", "random_weights:=true", "-p", "max_masks:=24",
            "-p", f"cameras:=[{','.join(CAMERAS)}]", "-p", "memory:=true", "-p", f"memory_file:={memory_file}",
            "-p", "memory_frame:=map", "-p", "tf_timeout:=1.0", "-p", "max_age:=0.0"]


class Hostile:
    """One rclpy node that sends each kind of bad input in turn and keeps count."""

    def __init__(self):
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import Trigger
        from tf2_msgs.msg import TFMessage

        from textregion_ros.srv import Find, Ground
        self.node = n = rclpy.create_node("soak_hostile", namespace=NS)
        deep = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = n.create_publisher(Image, f"{CAMERAS[1]}/image", qos_profile_sensor_data)
        self.pub_tf = n.create_publisher(TFMessage, "/tf", 100)
        self.pub_query = n.create_publisher(String, "query", 10)
        self.params = n.create_client(SetParameters, "textregion/set_parameters", qos_profile=deep)
        self.services = [(n.create_client(Find, "find", qos_profile=deep), lambda: Find.Request(query="red mug")),
                         (n.create_client(Trigger, "memory/save", qos_profile=deep), Trigger.Request),
                         (n.create_client(Trigger, "memory/clear", qos_profile=deep), Trigger.Request),
                         (n.create_client(Ground, "ground", qos_profile=deep), lambda: Ground.Request(query="mug"))]
        for client in [self.params] + [c for c, _ in self.services]:  # a request before discovery is lost
            assert client.wait_for_service(60), client.srv_name
        self.sent: Counter = Counter()
        self.pending = []
        self.replies: Counter = Counter()
        self.k = 0

    def step(self) -> None:
        kind = ("image", "tf_far", "tf_loop", "burst", "parameter", "query")[self.k % 6]
        getattr(self, kind)(self.k // 6)
        self.sent[kind] += 1
        self.k += 1
        done = [f for f in self.pending if f.done()]
        self.replies.update("answered" if f.result() is not None else "none" for f in done)
        self.pending = [f for f in self.pending if not f.done()]

    def image(self, i):
        from sensor_msgs.msg import Image
        m = Image(height=480, width=640, encoding=("rgb8", "32FC1")[i % 2], step=(7, 640 * 4)[i % 2],
                  data=bytes(640 * 480 * 3))
        m.header.stamp, m.header.frame_id = self.node.get_clock().now().to_msg(), "camera_optical"
        self.pub_image.publish(m)

    def _tf(self, parent, child, sec_offset=0):
        from geometry_msgs.msg import TransformStamped
        from tf2_msgs.msg import TFMessage
        ts = TransformStamped()
        ts.header.stamp = self.node.get_clock().now().to_msg()
        ts.header.stamp.sec += sec_offset
        ts.header.frame_id, ts.child_frame_id = parent, child
        ts.transform.rotation.w = 1.0
        self.pub_tf.publish(TFMessage(transforms=[ts]))

    def tf_far(self, i):
        self._tf("map", "camera_optical", 2**31 - 1 - self.node.get_clock().now().nanoseconds // 10**9)

    def tf_loop(self, i):
        self._tf("camera_optical", "map")

    def burst(self, i):
        client, request = self.services[i % len(self.services)]
        self.pending += [client.call_async(request()) for _ in range(20)]
        self.sent[f"burst/{client.srv_name.split('/')[-1]}"] += 20

    def parameter(self, i):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        p = (Parameter("full_every", value=0), Parameter("target_points", value="three"),
             Parameter("sam2_model", value="large"), Parameter("abstain_threshold", value=float("nan")))[i % 4]
        self.pending.append(self.params.call_async(SetParameters.Request(parameters=[p.to_parameter_msg()])))

    def query(self, i):
        from std_msgs.msg import String
        self.pub_query.publish(String(data=(" ; ;; ", "q" * 2000, "\x01\x02")[i % 3]))


def run_surfaces(args) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    import textregion_ros.msg as trmsg
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    memory_file = os.path.join(tempfile.mkdtemp(prefix="soak_surfaces_"), "memory.npz")
    node = subprocess.Popen(node_command(args, memory_file), env=env, stderr=subprocess.DEVNULL)
    rclpy.init()
    sub = rclpy.create_node("soak2_outputs", namespace=NS)
    regions = {c: [] for c in CAMERAS}
    for c in CAMERAS:
        sub.create_subscription(trmsg.RegionArray, f"{c}/regions", lambda m, c=c: regions[c].append(time.monotonic()), 5)
    diag = {}
    sub.create_subscription(DiagnosticArray, "/diagnostics",
                            lambda m: diag.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}),
                            10)
    deadline = time.monotonic() + 300
    while not diag and time.monotonic() < deadline and node.poll() is None:
        rclpy.spin_once(sub, timeout_sec=0.2)
    cams = [subprocess.Popen([sys.executable, "-c", CAMERA, str(args.fps), f"{NS}/{c}", "tf"], env=env,
                             stdout=subprocess.PIPE, text=True) for c in CAMERAS]
    hostile = Hostile()
    proc = psutil.Process(node.pid)
    t0, end = time.monotonic(), time.monotonic() + args.minutes * 60
    rss, next_bad = [], time.monotonic()
    while time.monotonic() < end and node.poll() is None:
        rclpy.spin_once(sub, timeout_sec=0.02)
        rclpy.spin_once(hostile.node, timeout_sec=0.0)
        if time.monotonic() >= next_bad:
            hostile.step()
            next_bad += args.bad_period
        if not rss or time.monotonic() - t0 - rss[-1][0] > 5:
            rss.append((time.monotonic() - t0, proc.memory_info().rss))
    alive = node.poll() is None
    for p in cams:
        p.terminate()
    save = hostile.services[1][0].call_async(hostile.services[1][1]())
    settle = time.monotonic() + 60
    while time.monotonic() < settle and (hostile.pending or not save.done()):
        rclpy.spin_once(hostile.node, timeout_sec=0.1)
        hostile.replies.update("answered" if f.result() is not None else "none" for f in hostile.pending if f.done())
        hostile.pending = [f for f in hostile.pending if not f.done()]
    rclpy.spin_once(sub, timeout_sec=1.5)
    report = summarise(args, alive, rss, regions, diag, hostile, save, memory_file, t0)
    node.terminate()
    node.wait(30)
    rclpy.shutdown()
    return report


def summarise(args, alive, rss, regions, diag, hostile, save, memory_file, t0) -> dict:
    from textregion_ros.memory import MemoryConfig, ObjectMemory, load_memory
    seconds = args.minutes * 60
    floors = [round(min(r for t, r in rss if m * 60 <= t < (m + 1) * 60) / 1e6)
              for m in range(int(args.warmup // 60), int(seconds // 60)) if any(m * 60 <= t < (m + 1) * 60 for t, _ in rss)]
    node_entry = next((v for k, v in diag.items() if k.endswith("textregion: inference")), {})
    counted = {k: v for k, v in node_entry.items() if k.startswith(("bad_input/", "shed/", "errors/"))}
    try:
        loaded = load_memory(memory_file, {"encoder": "ViT-B-16|openai|random", "token_dim": 512, "frame": "map"},
                             ObjectMemory(MemoryConfig()))
    except Exception as exc:  # reported, the run's verdict
        loaded = f"{type(exc).__name__}: {exc}"
    last = t0 + seconds - 120
    return {"preset": args.preset, "minutes": args.minutes, "camera_fps": args.fps, "bad_period_s": args.bad_period,
            "node_alive_at_end": alive, "rss_floor_mb_by_minute": floors,
            "rss_growth_mb_after_warmup": (max(floors) - floors[0]) if floors else None,
            "sent": dict(hostile.sent), "service_replies": dict(hostile.replies),
            "unanswered_at_end": len(hostile.pending), "counted_by_node": counted,
            "regions_in_last_2_minutes": {c: sum(t >= last for t in ts) for c, ts in regions.items()},
            "final_save": save.result().message if save.done() and save.result() is not None else None,
            "memory_file_objects_loaded": loaded}


def main_surfaces(args) -> int:
    report = run_surfaces(args)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    ok = report["node_alive_at_end"] and isinstance(report["memory_file_objects_loaded"], int) and all(
        report["regions_in_last_2_minutes"].values())
    return 0 if ok else 1

