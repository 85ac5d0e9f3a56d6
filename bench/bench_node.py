"""The node as a user launches it: frame rate, stamp-to-publish latency and memory, every output subscribed.

    python bench/bench_node.py [--preset realtime] [--fps 30] [--regions 64] [--seconds 60] [--device cuda]
    python bench/bench_node.py --device cuda --matrix      # issue 9's three rows: realtime at 30 and 60 fps, paper at 30
    python bench/bench_node.py --cameras 2                 # one node with two cameras against two nodes
    python bench/bench_node.py --memory-objects 1000       # the object memory on, 1,000 objects remembered
    python bench/bench_node.py --proxy-gpu [--memory-node] # the GPU frame rate by proxy, on the CPU (node_proxy.py)

Three processes, as on a robot: the node (the installed ``textregion_node`` that ``ros2 run`` starts, or
``python -m textregion_ros.ros.node``), a camera publishing 640x480 rgb8 + 32FC1 depth + camera_info at
--fps, and this process, which subscribes to every output and to /diagnostics. Exactly --regions regions per
frame are forced (random weights let few through otherwise); the query "red mug" stands, so the grounded,
3D and target outputs are all computed.

For every output it reports the received rate and the latency from the image stamp to receipt here (p50,
p95); "frame complete" is the latency of the last output of each frame. Beside them it prints the node's
own figures from /diagnostics: processed rate, pipeline time, the inference stage's overhead outside the
pipeline, the publish stage's wall and CPU time per component, the drop counters, and the device memory
peak (torch's caching allocator) with nvidia-smi's figure for the node's process where there is one. The
pipeline time is measured inside the same node over the same window (from its cumulative total), so node
fps and pipeline fps (1 / the pipeline's mean time per frame) compare directly.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CAMERA = r"""
import sys, time, json, rclpy, numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, CameraInfo
from std_msgs.msg import Header
from textregion_ros.ros.convert import camera_frame
from textregion_ros.eval.scene import make_scene
import signal
fps = float(sys.argv[1]); stop = []
rclpy.init(); n = rclpy.create_node("bench_camera", namespace=sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # after rclpy.init, which installs its own
pi = n.create_publisher(Image, "image", qos_profile_sensor_data)
pd = n.create_publisher(Image, "depth", qos_profile_sensor_data)
pc = n.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
tf = None
if len(sys.argv) > 3 and sys.argv[3] == "tf":  # the camera's pose in map at each frame's stamp, for the memory
    from tf2_msgs.msg import TFMessage
    from geometry_msgs.msg import TransformStamped
    tf = n.create_publisher(TFMessage, "/tf", 100)
s = make_scene(); depth = np.nan_to_num(s.depth_m, nan=0.0).astype(np.float32)
while pi.get_subscription_count() == 0: time.sleep(0.05)
period = 1.0 / fps; t = time.monotonic(); sent = 0; late = 0
while not stop:
    header = Header(stamp=n.get_clock().now().to_msg(), frame_id="camera_optical")
    m, d, info = camera_frame(s.rgb, s.K, header, depth)
    if tf is not None:
        ts = TransformStamped(); ts.header.stamp, ts.header.frame_id, ts.child_frame_id = header.stamp, "map", header.frame_id
        ts.transform.rotation.w = 1.0
        tf.publish(TFMessage(transforms=[ts]))
    pc.publish(info); pd.publish(d); pi.publish(m); sent += 1
    t += period; wait = t - time.monotonic()
    if wait < 0: late += 1
    time.sleep(max(0.0, wait))
print(json.dumps({"sent": sent, "late": late}))
"""

# (preset, camera fps) of issue 9's node figures.
MATRIX = (("realtime", 30.0), ("realtime", 60.0), ("paper", 30.0))


def node_command(namespace: str, args) -> list:
    installed = shutil.which("textregion_node") or os.path.join(ROOT, "install", "textregion_ros", "lib",
                                                                 "textregion_ros", "textregion_node")
    exe = [installed] if os.access(installed, os.X_OK) else [sys.executable, "-m", "textregion_ros.ros.node"]
    if getattr(args, "proxy_gpu", False):  # the node with the GPU-like stand-in (proxy_node.py)
        exe = [sys.executable, os.path.join(ROOT, "bench", "proxy_node.py")]  # the tree's package: PROXY_TREE
    params = {"preset": args.preset, "device": args.device, "random_weights": "true",
              # Random SAM2 heads score IoU and stability near zero; forcing K masks keeps the load real.
              "pred_iou_thresh": "0.0", "stability_score_thresh": "0.0",
              "max_masks": str(args.regions), "force_masks": str(args.regions),
              # A found target every frame, so the 3D target outputs (cloud, box, pose) are always computed.
              "abstain_threshold": "0.0"}
    if args.memory_file and not getattr(args, "memory_node", False):
        params.update(memory="true", memory_file=args.memory_file, tf_timeout="1.0")
    cmd = exe + ["--ros-args", "-r", f"__ns:={namespace}", "--params-file",
                 os.path.join(ROOT, "config", "perceive.yaml")]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return cmd


def tree_env(tree: str) -> dict:
    """The environment of a node run from ``tree`` (this checkout, or --old-tree's): its package first."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")]), PROXY_TREE=tree)


def memory_node_command(namespace: str, args) -> list:
    """textregion_memory beside the node (--memory-node): it reads the node's observation topic."""
    return [sys.executable, "-m", "textregion_ros.ros.memory_node", "--ros-args", "-r", f"__ns:={namespace}",
            "--params-file", os.path.join(ROOT, "config", "perceive.yaml"), "-p", f"preset:={args.preset}",
            "-p", "random_weights:=true", "-p", f"memory_file:={args.memory_file}", "-p", "tf_timeout:=1.0"]


def gpu_memory_mb(pid: int):
    """nvidia-smi's memory for one process (CUDA context included), or None without nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(",") for line in out.strip().splitlines() if "," in line]
    used = [float(m) for p, m in rows if p.strip() == str(pid)]
    return used[0] if used else None


def percentiles(values) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values) * 1e3
    return {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 1),
            "p95_ms": round(float(np.percentile(v, 95)), 1), "max_ms": round(float(v.max()), 1)}


def run_one(args, namespace: str) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PointStamped, PoseStamped
    from sensor_msgs.msg import Image, PointCloud2
    from visualization_msgs.msg import MarkerArray
    from std_msgs.msg import String

    import textregion_ros.msg as trmsg
    from textregion_ros.ros.detections import vision_msgs

    outputs = {"regions": trmsg.RegionArray, "instance_mask": Image, "grounded": trmsg.GroundedRegion,
               "grounded_all": trmsg.GroundedRegionArray, "grounded_point": PointStamped, "overlay": Image,
               "markers": MarkerArray, "grounded_cloud": PointCloud2, "grounded_box": trmsg.GroundedBox,
               "grounded_pose": PoseStamped}
    if vision_msgs is not None:
        outputs.update(detections=vision_msgs.Detection2DArray, detections_3d=vision_msgs.Detection3DArray)
    if getattr(args, "only", None):
        outputs = {k: v for k, v in outputs.items() if k in args.only}
    if args.memory_file:
        outputs.update({"memory/objects": trmsg.MemoryObjectArray, "memory/markers": MarkerArray,
                        "memory/cloud": PointCloud2, "memory/grounded": PoseStamped})
    tree = getattr(args, "tree", ROOT)
    env = tree_env(tree)
    log = tempfile.NamedTemporaryFile("w+", prefix="bench_node_", suffix=".log", delete=False)  # a pipe could fill
    # Each node in its tree's directory: ``python -m`` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so from this checkout's directory an --old-tree run would start this checkout's memory node.
    node = subprocess.Popen(node_command(namespace, args), env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            cwd=tree)
    memory_node = subprocess.Popen(memory_node_command(namespace, args), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   text=True, cwd=tree) if args.memory_file and getattr(args, "memory_node", False) \
        else None
    mem_diag = {}
    sub = rclpy.create_node("bench_outputs", namespace=namespace)
    measuring = [False]
    latency = defaultdict(list)  # output -> stamp-to-receipt seconds (measuring window only)
    frame_done = {}  # stamp -> latest receipt latency over the frame's outputs
    regions_per_frame = []
    diag = {}

    def on_output(name, msg):
        if not measuring[0]:
            return
        header = msg.header if hasattr(msg, "header") else (msg.markers[0].header if msg.markers else None)
        if header is None:
            return
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        lat = (time.time_ns() - stamp) * 1e-9
        latency[name].append(lat)
        frame_done[stamp] = max(frame_done.get(stamp, 0.0), lat)
        if name == "regions":
            regions_per_frame.append(len(msg.regions))

    for name, typ in outputs.items():
        sub.create_subscription(typ, name, lambda m, n=name: on_output(n, m), 5)

    def on_diag(m):
        for st in m.status:
            if st.name.startswith(namespace + "/"):
                into = mem_diag if "textregion_memory" in st.name else diag
                into.clear()
                into.update({kv.key: kv.value for kv in st.values})
    sub.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    recorder = None
    if memory_node is not None and getattr(args, "record_observations", None):
        from memory_replay import Recorder
        recorder = Recorder(sub)
    query = sub.create_publisher(String, "query", 10)
    deadline = time.monotonic() + args.startup_timeout
    while not diag and node.poll() is None and time.monotonic() < deadline:  # up when it reports
        rclpy.spin_once(sub, timeout_sec=0.2)
    if not diag:
        node.kill()
        log.seek(0)
        return {"error": "node did not start", "log": log.read()[-3000:]}
    query.publish(String(data="red mug"))
    cam = subprocess.Popen([sys.executable, "-c", CAMERA, str(args.fps), namespace] + (["tf"] if args.memory_file else []),
                           env=env, stdout=subprocess.PIPE, text=True)
    # Warm-up: at least --warmup seconds and --warmup-frames processed frames, so compilation (about a
    # minute with the realtime preset's CUDA graphs) and first-frame caches stay out of the window.
    t_start, first = time.monotonic(), int(float(diag.get("processed", 0)))
    while node.poll() is None and time.monotonic() - t_start < args.startup_timeout and (
            time.monotonic() - t_start < args.warmup
            or int(float(diag.get("processed", 0))) - first < args.warmup_frames):
        rclpy.spin_once(sub, timeout_sec=0.1)
    base, mem_base = dict(diag), dict(mem_diag)
    measuring[0] = True
    if recorder is not None:
        recorder.on = True
    t0 = time.monotonic()
    gpu_samples = []
    try:
        import psutil
        proc = psutil.Process(node.pid)
        proc.cpu_percent()
    except Exception:  # psutil is a dev dependency; the figures below are optional
        proc = None
    while time.monotonic() - t0 < args.seconds and node.poll() is None:
        rclpy.spin_once(sub, timeout_sec=0.1)
        if not gpu_samples or time.monotonic() - gpu_samples[-1][0] > 5:
            gpu_samples.append((time.monotonic(), gpu_memory_mb(node.pid)))
    window = time.monotonic() - t0
    measuring[0] = False
    recorded = recorder.save(args.record_observations, args.memory_objects) if recorder is not None else None
    cam.terminate()
    for _ in range(20):  # the diagnostics published after the camera stopped
        rclpy.spin_once(sub, timeout_sec=0.1)
    end, mem_end = dict(diag), dict(mem_diag)
    cpu_percent = proc.cpu_percent() if proc is not None else None
    rss_mb = proc.memory_info().rss / 2**20 if proc is not None else None
    try:
        cam_out = json.loads(cam.communicate(timeout=30)[0].strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        cam.kill()
        cam_out = {}
    alive = node.poll() is None
    if memory_node is not None:
        memory_node.terminate()
        memory_node.wait(30)
    node.terminate()
    try:
        node.wait(30)
    except subprocess.TimeoutExpired:
        node.kill()
    sub.destroy_node()

    count, f = window_readers(base, end)
    processed = count("processed")
    try:  # the pipeline's mean over this window, from the node's cumulative total
        pipeline_ms = round(1e3 * (float(end["pipeline_total_s"]) - float(base.get("pipeline_total_s", 0)))
                            / processed, 2) if processed else None
    except (KeyError, ValueError):
        pipeline_ms = f("pipeline_mean_s")
    gpu = [m for _, m in gpu_samples if m is not None]
    return {
        "preset": args.preset, "device": args.device, "camera_fps": args.fps, "regions_forced": args.regions,
        "window_s": round(window, 1), "camera": cam_out, "node_alive": alive,
        "images_received_by_node": count("received"), "processed": processed,
        "processed_fps": round(processed / window, 2),
        "regions_msgs_fps": round(len(latency["regions"]) / window, 2),
        "regions_per_frame_mean": round(float(np.mean(regions_per_frame)), 1) if regions_per_frame else None,
        "stamp_to_receipt": {name: percentiles(v) for name, v in sorted(latency.items())},
        "frame_complete": percentiles(list(frame_done.values())),
        "outputs_fps": {name: round(len(v) / window, 2) for name, v in sorted(latency.items())},
        "node_latency_p95_ms": f("latency_p95_s"),  # the node's own stamp-to-publish, last 100 frames
        "pipeline_mean_ms": pipeline_ms,
        "pipeline_fps": round(1e3 / pipeline_ms, 2) if pipeline_ms else None,
        "inference_overhead_mean_ms": f("ros_overhead_mean_s"),
        "publish_stage_wall_ms": f("publish_mean_s"), "publish_stage_cpu_ms": f("publish_cpu_mean_s"),
        "publish_parts_ms": {k.split("/", 1)[1]: f(k) for k in end if k.startswith("publish_mean_s/")},
        "drops": {k: count(k) for k in end if k.startswith("dropped")},
        "bad_or_errors": {k: count(k) for k in end if k.startswith(("bad_input/", "errors/")) and count(k)},
        "device_memory_peak_mb_torch": float(end["device_memory_peak_mb"]) if "device_memory_peak_mb" in end else None,
        "device_memory_mb_nvidia_smi_max": max(gpu) if gpu else None,
        "node_cpu_percent": cpu_percent, "node_rss_mb": round(rss_mb) if rss_mb else None, "node_log": log.name,
        "memory": (memory_figures(args, count, f, end) if memory_node is None else
                   node_memory_figures(args, mem_base, mem_end, recorded)) if args.memory_file else None,
    }


def memory_figures(args, count, f, end) -> dict:
    """The memory stage over the window: frames fused and dropped, detections per fused frame, and its time
    per frame, fusion alone (ObjectMemory.integrate, what bench_memory times) and the whole stage (TF lookup,
    back-projection, fusion and the memory outputs, all subscribed here)."""
    fused = count("memory/fused")
    return {"objects_preloaded": args.memory_objects, "objects_end": end.get("memory_objects"),
            "fused": fused, "dropped": count("memory/dropped"), "no_transform": count("memory/no_transform"),
            "detections_per_fused_frame": round(count("memory/detections") / fused, 1) if fused else None,
            "fuse_mean_ms": f("memory_fuse_mean_s"), "fuse_cpu_mean_ms": f("memory_fuse_cpu_mean_s"),
            "stage_mean_ms": f("memory_stage_mean_s")}


def window_readers(base: dict, end: dict):
    """(count, f) over one measuring window of /diagnostics: a counter's growth, and a figure at its end
    (scaled, None when absent)."""
    def count(key):
        return int(float(end.get(key, 0))) - int(float(base.get(key, 0)))

    def f(key, scale=1e3):
        try:
            return round(float(end[key]) * scale, 2)
        except (KeyError, ValueError):
            return None
    return count, f


def node_memory_figures(args, base, end, recorded=None) -> dict:
    """memory_figures from the memory node's own /diagnostics entry (--memory-node); with a recording of the
    window's observations, the same frames fused again standalone (memory_replay.py) and the ratio."""
    count, f = window_readers(base, end)
    out = memory_figures(args, count, f, end)
    out["in"] = "textregion_memory, its own process"
    if recorded:
        tree = getattr(args, "tree", ROOT)  # that tree's package fuses (bench helpers from this checkout)
        code = f"import json, sys; sys.path[:0] = [{tree!r}, {os.path.join(ROOT, 'bench')!r}]; " \
               f"import memory_replay; print('RESULT ' + json.dumps(memory_replay.replay({recorded!r})))"
        p = subprocess.run([sys.executable, "-c", code], env=tree_env(tree),
                           capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        alone = json.loads(line[-1][7:]) if line else {"error": p.stderr[-2000:]}
        out["standalone_same_frames"] = alone
        if alone.get("fuse_mean_ms") and out.get("fuse_mean_ms"):
            out["in_node_over_standalone"] = round(out["fuse_mean_ms"] / alone["fuse_mean_ms"], 2)
    return out


def write_memory_file(args, directory: str) -> str:
    """--memory-objects objects (bench_memory's grid of boxes, away from this camera's view) saved as the
    node's memory_file, with the header the node expects for this preset, so it starts remembering them."""
    import open_clip

    import bench_memory
    from textregion_ros.config import preset

    cfg = preset(args.preset, random_weights=True)
    dim = int(open_clip.get_model_config(cfg.encoder_model)["embed_dim"])
    return bench_memory.save_filled(os.path.join(directory, "memory.npz"), args.memory_objects, dim,
                                    {"encoder": f"{cfg.encoder_model}|{cfg.encoder_weights}|random",
                                     "token_dim": dim, "frame": "map"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-lite")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--regions", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60, help="measuring window, after --warmup")
    ap.add_argument("--warmup", type=float, default=20, help="seconds of camera before measuring")
    ap.add_argument("--warmup-frames", type=int, default=5, help="frames the node processes before measuring")
    ap.add_argument("--startup-timeout", type=float, default=600)
    ap.add_argument("--matrix", action="store_true", help="realtime at 30 and 60 fps, paper at 30 (issue 9)")
    ap.add_argument("--cameras", type=int, default=0,
                    help="N >= 2: one node with N cameras against N nodes of one camera, same run (node_cameras.py)")
    ap.add_argument("--flood", action="store_true",
                    help="with --cameras 2: the second camera silent, then flooded with garbage (node_cameras.py)")
    ap.add_argument("--flood-fps", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=2, help="with --flood: quiet and flooded windows of each")
    ap.add_argument("--memory-objects", type=int, default=-1,
                    help="N >= 0: the object memory on, starting with N remembered objects, and the camera's TF")
    ap.add_argument("--proxy-gpu", action="store_true",
                    help="the node with a GPU-like stand-in pipeline, four configurations (node_proxy.py)")
    ap.add_argument("--memory-node", action="store_true",
                    help="the memory in its own node (textregion_memory) instead of the perception node's stage")
    ap.add_argument("--configs", nargs="+", default=None, choices=("regions", "every", "memory", "two"),
                    help="with --proxy-gpu: only these configurations (by their first word)")
    ap.add_argument("--record-observations", default=None, metavar="PATH",
                    help="with --memory-node: record the window's observations there and fuse them again standalone "
                         "(memory_replay.py), for the in-node fusion time's twin on the same frames")
    ap.add_argument("--old-tree", default=None,
                    help="with --proxy-gpu: every configuration also on this checkout (e.g. a git worktree of the "
                         "previous commit), taking turns with this one in the same run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.proxy_gpu and args.memory_objects < 0:
        args.memory_objects = 1000
    args.memory_file = write_memory_file(args, tempfile.mkdtemp(prefix="bench_node_")) \
        if args.memory_objects >= 0 else None
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(ROOT, "config", "fastdds_localhost.xml"))
    os.environ.setdefault("ROS_DOMAIN_ID", "78")
    import rclpy
    rclpy.init()
    if args.proxy_gpu:
        from node_proxy import print_table, run_proxy
        args.memory_file = None
        report = run_proxy(args, tree_env(ROOT))
        rclpy.shutdown()
        print_table(report)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        return 0
    if args.cameras >= 2:
        from node_cameras import run_cameras, run_flood
        env = tree_env(ROOT)
        report = run_flood(args, env) if args.flood else run_cameras(args, env)
        rclpy.shutdown()
        print(json.dumps(report, indent=2), flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        return 0
    runs = []
    for i, (preset, fps) in enumerate(MATRIX if args.matrix else ((args.preset, args.fps),)):
        args.preset, args.fps = preset, fps
        report = run_one(args, f"/bench{i}")
        runs.append(report)
        print(json.dumps(report, indent=2), flush=True)
    rclpy.shutdown()
    print("\npreset     cam fps  node fps  pipeline fps  frame-complete p50/p95 ms  node p95 ms  "
          "publish wall/cpu ms  device MB torch/smi")
    for r in runs:
        if "error" in r:
            print(f"{r.get('preset', '?'):10s} error: {r['error']}")
            continue
        fc = r["frame_complete"]
        print(f"{r['preset']:10s} {r['camera_fps']:7.0f}  {r['processed_fps']:8.2f}  {r['pipeline_fps'] or 0:12.2f}  "
              f"{fc.get('p50_ms', float('nan')):12.1f} / {fc.get('p95_ms', float('nan')):<10.1f}  "
              f"{r['node_latency_p95_ms'] or float('nan'):11.1f}  "
              f"{r['publish_stage_wall_ms'] or float('nan'):8.1f} / {r['publish_stage_cpu_ms'] or float('nan'):<8.1f}  "
              f"{r['device_memory_peak_mb_torch']} / {r['device_memory_mb_nvidia_smi_max']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(runs if args.matrix else runs[0], fh, indent=2)
    return 0 if all(r.get("node_alive") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
