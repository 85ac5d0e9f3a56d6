"""The node's own per-frame work, measured with a recorded pipeline result (issue 9's method).

    python bench/bench_node_overhead.py [--regions 64] [--frames 30] [--old-tree /path/to/old/checkout]

It runs the node twice, with tracking on (the default) and off, so tracking's share of the
critical path comes from one run.

The pipeline is replaced by one recorded FrameResult (real models, random weights, exactly
--regions regions forced), so what is timed is only the node: image conversion and upload on the
inference stage (the critical path), and composition, message building and publishing on the
publish stage. Every output is subscribed, 640x480 RGB-D with camera_info, over real DDS.
With --old-tree, the same measurement runs on another checkout's node (e.g. the first build,
whose publishing ran on the inference thread) in a subprocess, for a before/after table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecordedPipeline:
    """Delegates to a real Pipeline, but process() returns one recorded result (a copy each time)."""

    def __init__(self, pipe, result):
        self._pipe, self._result = pipe, result
        self.process_calls = 0

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def process(self, image, *args, **kwargs):
        import copy
        self.process_calls += 1
        r = copy.copy(self._result)
        r.__dict__.pop("frame_masks", None)
        return r


def measure(root: str, regions: int, frames: int, tracking: bool = True) -> dict:
    sys.path.insert(0, os.path.join(root, "test"))
    sys.path.insert(0, root)
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(root, "config", "fastdds_localhost.xml"))
    import rclpy
    import torch
    from rclpy.parameter import Parameter

    from ros_harness import Harness
    from textregion_ros.config import preset
    from textregion_ros.pipeline import Pipeline
    try:
        from textregion_ros.eval.scene import make_scene
    except ImportError:  # an --old-tree from before the scene moved into eval/
        from textregion_ros.scene import make_scene

    torch.manual_seed(0)
    pipe = Pipeline(preset("cpu-lite", random_weights=True, force_masks=regions, max_masks=regions,
                           pred_iou_thresh=0.0, stability_score_thresh=0.0, remove_global_patches=False))
    scene = make_scene()
    result = pipe.process(scene.rgb, queries=["red mug"])
    assert len(result) == regions, len(result)
    rec = RecordedPipeline(pipe, result)
    rclpy.init()
    h = Harness(namespace="/overhead", pipeline=rec,
                extra=[Parameter("max_masks", value=regions), Parameter("force_masks", value=regions),
                       Parameter("max_age", value=0.0)] + ([] if tracking else [Parameter("tracking", value=False)]))
    h.query("red mug")
    time.sleep(0.5)
    depth = np.nan_to_num(scene.depth_m, nan=0.0).astype(np.float32)
    for _ in range(3):  # warm-up
        h.output("regions", h.send(scene.rgb, depth, scene.K))
    n0 = h.node.stats.snapshot().get("processed", 0)
    h.node.stats.compute.clear(), h.node.stats.pipeline.clear()
    if hasattr(h.node.stats, "publish"):
        h.node.stats.publish.clear()
        if hasattr(h.node.stats, "publish_cpu"):  # an older tree (--old-tree) may not have it
            h.node.stats.publish_cpu.clear()
        for q in getattr(h.node.stats, "publish_parts", {}).values():
            q.clear()
    t0 = time.monotonic()
    for _ in range(frames):
        hdr = h.send(scene.rgb, depth, scene.K)
        for topic in ("regions", "overlay", "markers", "instance_mask", "grounded"):
            assert h.output(topic, hdr, 60) is not None, (topic, h.node.stats.snapshot())
    wall = time.monotonic() - t0
    snap = h.node.stats.snapshot()
    out = {"tree": root, "regions": regions, "frames": snap["processed"] - n0, "tracking": tracking,
           "critical_path_ms": 1e3 * snap["ros_overhead_mean_s"],
           "pipeline_stub_ms": 1e3 * snap["pipeline_mean_s"],
           "wall_per_frame_ms": 1e3 * wall / frames}
    if "publish_mean_s" in snap:
        out["publish_stage_ms"] = 1e3 * snap["publish_mean_s"]
        # The stage thread's own CPU: wall minus this is waiting for the GIL or a core (the tester's
        # subscribers deserialize every output in this same process).
        out["publish_stage_cpu_ms"] = 1e3 * snap.get("publish_cpu_mean_s", float("nan"))
        for k, v in snap.items():
            if k.startswith("publish_mean_s/"):
                out[f"publish_{k.split('/')[1]}_ms"] = 1e3 * v
    h.close()
    rclpy.shutdown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regions", type=int, default=64)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--old-tree", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print("RESULT " + json.dumps(measure(args._child, args.regions, args.frames)))
        return 0
    reports = {"after": measure(ROOT, args.regions, args.frames)}
    # The same node with tracking off, in the same run: what tracking adds to the critical path.
    reports["after_tracking_off"] = measure(ROOT, args.regions, args.frames, tracking=False)
    if args.old_tree:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([args.old_tree, os.environ.get("PYTHONPATH", "")]),
                   ROS_DOMAIN_ID=str(int(os.environ.get("ROS_DOMAIN_ID", "0")) + 1))
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", args.old_tree, "--regions",
                            str(args.regions), "--frames", str(args.frames)], env=env, capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        reports["before"] = json.loads(line[-1][7:]) if line else {"error": p.stderr[-2000:]}
    print(json.dumps(reports, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
