"""bench_node --proxy-gpu: the node's frame rate beside a GPU-like pipeline, on the CPU (proxy_node.py).

First the stand-in alone: its frames back to back in a process of its own while the camera publishes 640x480
RGB-D at --fps to a subscriber here (the same processes around it as in the runs below). Then the node, with
the stand-in inside, as launched, in four configurations, each in its own process:

    regions only    only ``regions`` subscribed
    every output    every frame output subscribed
    memory          every output, and the object memory on with --memory-objects remembered (default 1,000)
    two cameras     one node with two cameras (regions of each subscribed)

For each it reports the node's processed rate against the stand-in's own and against the ceiling (the stand-in's
rate or the camera's, the lower: the node cannot process frames the camera did not send), stamp-to-publish p50/p95, the
publish stage's time per component, the inference stage's time per frame in the node, and the memory's
fusion time. ``--memory-node`` runs the memory configuration with the memory in its own node and process
(textregion_memory, fed by the perception node's ``observation`` topic) instead of the perception node's stage.
``--old-tree DIR`` runs each configuration on that checkout too, right after this one's, in the same run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = os.path.join(ROOT, "bench", "proxy_node.py")


def solo_rate(args, env) -> dict:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from bench_node import CAMERA

    sub = rclpy.create_node("proxy_solo_reader")
    got = []
    sub.create_subscription(Image, "/proxy_solo/image", lambda m: got.append(1), qos_profile_sensor_data)
    cam = subprocess.Popen([sys.executable, "-c", CAMERA, str(args.fps), "/proxy_solo"], env=env,
                           stdout=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while time.monotonic() < end:  # the camera is publishing before the stand-in starts
        rclpy.spin_once(sub, timeout_sec=0.1)
    seconds = min(args.seconds, 15.0)
    solo = subprocess.Popen([sys.executable, PROXY, "--solo", str(seconds)], env=env, stdout=subprocess.PIPE,
                            text=True)
    while solo.poll() is None:
        rclpy.spin_once(sub, timeout_sec=0.05)
    report = json.loads(solo.stdout.read().strip().splitlines()[-1])
    report["camera_frames_received_here"] = len(got)
    cam.terminate()
    cam.wait(30)
    sub.destroy_node()
    return report


def summary(name: str, r: dict, solo_fps: float, camera_fps: float) -> dict:
    """One configuration's row. The node cannot process more frames than the camera sends, so beside the ratio
    to the stand-in's own rate it gives the ratio to the ceiling: the stand-in's rate or the camera's, the lower."""
    if "error" in r:
        return {"config": name, "error": r["error"]}
    fps = r.get("processed_fps", r.get("processed_fps_total"))
    cameras = 2 if "processed_fps_total" in r or "regions_stamp_to_receipt" in r else 1
    ceiling = min(solo_fps, camera_fps * cameras)
    out = {"config": name, "node_fps": fps, "standin_fps": solo_fps, "ceiling_fps": ceiling,
           "ratio": round(fps / solo_fps, 3) if fps is not None else None,
           "ratio_to_ceiling": round(fps / ceiling, 3) if fps is not None else None}
    if "frame_complete" in r:
        fc = r["frame_complete"]
        out.update(frame_complete_p50_ms=fc.get("p50_ms"), frame_complete_p95_ms=fc.get("p95_ms"),
                   inference_ms_in_node=r.get("pipeline_mean_ms"), publish_wall_ms=r.get("publish_stage_wall_ms"),
                   publish_cpu_ms=r.get("publish_stage_cpu_ms"), node_cpu_percent=r.get("node_cpu_percent"),
                   publish_parts_ms=r.get("publish_parts_ms"))
        if r.get("memory"):
            out["memory"] = r["memory"]
    else:  # two cameras: regions latency per camera
        out["regions_stamp_to_receipt"] = r.get("regions_stamp_to_receipt")
    return out


def run_config(args, env, i: int, name: str, cfg: dict, tree: str) -> dict:
    import bench_node
    from node_cameras import Layout, measure

    args.tree = tree
    args.only = cfg.get("only")
    directory = tempfile.mkdtemp(prefix="proxy_")
    args.memory_file = bench_node.write_memory_file(args, directory) if cfg.get("memory") else None
    # The memory node's fusion against the same frames fused standalone (memory_replay.py).
    args.record_observations = os.path.join(directory, "observations.pkl") if args.memory_node else None
    if not cfg.get("cameras"):
        return bench_node.run_one(args, f"/proxy{i}")
    layout = Layout(args, "proxy_two", [("/proxy_two", ["left", "right"])], bench_node.tree_env(tree))
    try:
        return measure(layout, args)
    finally:
        layout.stop()


def run_proxy(args, env) -> dict:
    """Each configuration on this checkout and, with --old-tree, on that one right after it (the same machine
    state, the same stand-in calibration)."""
    solo = solo_rate(args, env)
    env["PROXY_STEP_OPS"] = str(solo["ops_per_frame"])
    os.environ["PROXY_STEP_OPS"] = env["PROXY_STEP_OPS"]
    trees = [("this", ROOT)] + ([("old", os.path.abspath(args.old_tree))] if args.old_tree else [])
    runs, rows = {}, []
    configs = [("regions only", {"only": ("regions",)}), ("every output", {}),
               (f"memory {max(args.memory_objects, 0)} objects" + (" (memory node)" if args.memory_node else ""),
                {"memory": True}), ("two cameras", {"cameras": 2})]
    for i, (name, cfg) in enumerate(configs):
        if args.configs and name.split()[0] not in args.configs:
            continue
        for label, tree in trees:
            key = name if label == "this" else f"{name} [old tree]"
            runs[key] = run_config(args, env, i, name, cfg, tree)
            rows.append(dict(summary(key, runs[key], solo["fps"], args.fps), tree=tree))
            print(json.dumps(rows[-1]), flush=True)
    args.memory_file, args.tree = None, ROOT
    return {"what": "bench_node --proxy-gpu: the node with a GPU-like stand-in pipeline (bench/proxy_node.py)",
            "camera_fps": args.fps, "standin_alone": solo, "summary": rows, "runs": runs}


def print_table(report: dict) -> None:
    print(f"\nstand-in alone: {report['standin_alone']['fps']} fps ({report['standin_alone']['frame_ms_p50']} ms)")
    print("config                                 node fps  /stand-in  /ceiling  p50/p95 ms        "
          "publish wall/cpu ms  fuse ms")
    for r in report["summary"]:
        if "error" in r:
            print(f"{r['config']:38s} error: {r['error']}")
            continue
        mem = (r.get("memory") or {}).get("fuse_mean_ms")
        print(f"{r['config']:38s} {r['node_fps']:8.2f}  {r['ratio']:9.2f}  {r['ratio_to_ceiling']:8.2f}  "
              f"{r.get('frame_complete_p50_ms')} / {r.get('frame_complete_p95_ms')}   "
              f"{r.get('publish_wall_ms')} / {r.get('publish_cpu_ms')}   {mem}")
