"""Cost of the grounded target's 3D per frame at 640x480, against the same run's pipeline frame.

    python bench/bench_geometry.py [--device cpu|cuda] [--frames 20] [--regions 64]

Times, on a ray-cast box scene with depth holes and flying pixels (test/rgbd_shapes.py):
* ``target_geometry`` (cleaning, cloud, PCA + face-normal oriented box) and the host copy of it;
* building the ROS messages from it (PointCloud2, GroundedBox, PoseStamped);
* per-region 3D with extents (``region_stats``, masked_quantiles: one sort per coordinate) against the median alone
  (``region_points``, what the node computed before), for ``--regions`` masks.
The reference is this run's pipeline frame (``cpu-lite`` on the CPU, ``realtime`` on CUDA) with
as many regions forced. Writes bench/reports/<device>-geometry.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "test"))

from reports_io import device_name, write_report  # noqa: E402
from rgbd_shapes import box_scene  # noqa: E402
from textregion_ros.compose import HostTarget  # noqa: E402
from textregion_ros.config import preset  # noqa: E402
from textregion_ros.geometry import region_points, region_stats, target_geometry  # noqa: E402
from textregion_ros.pipeline import Pipeline  # noqa: E402


def timed(fn, dev, n):
    out, times = None, []
    for _ in range(n + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times[1:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--regions", type=int, default=64)
    args = ap.parse_args()
    dev = torch.device(args.device)
    s = box_scene()
    mask = torch.from_numpy(s.mask).to(dev)
    depth = torch.from_numpy(s.depth_m).to(dev)
    rgb = torch.from_numpy(s.rgb).to(dev)

    def target():
        g = target_geometry(mask, depth, s.K, rgb)
        return HostTarget.unpack(g.points.cpu().numpy(), g.colors.cpu().numpy(), HostTarget.pack(g).cpu().numpy())
    host, t_target = timed(target, dev, args.frames)

    import rclpy  # noqa: F401  (messages need the ROS Python packages, not a running context)
    import textregion_ros.msg as trmsg
    from std_msgs.msg import Header

    from textregion_ros.ros import target3d
    hdr = Header(frame_id="camera_color_optical_frame")
    _, t_msgs = timed(lambda: (target3d.point_cloud(host, hdr), target3d.grounded_box(trmsg, host, hdr, "q", 1),
                               target3d.pose_stamped(host, hdr)), dev, args.frames)

    rng = np.random.default_rng(0)
    masks = torch.zeros(args.regions, 480, 640, dtype=torch.bool)
    for i in range(args.regions):  # boxes of assorted sizes, like SAM2 regions
        x, y = rng.integers(0, 560), rng.integers(0, 400)
        masks[i, y:y + rng.integers(20, 80), x:x + rng.integers(20, 80)] = True
    masks = masks.to(dev)
    K = torch.as_tensor(s.K)
    _, t_median = timed(lambda: region_points(masks, depth, K, stride=2), dev, max(args.frames // 4, 3))
    _, t_stats = timed(lambda: region_stats(masks, depth, K, stride=2), dev, max(args.frames // 4, 3))

    name = "realtime" if dev.type == "cuda" else "cpu-lite"
    pipe = Pipeline(preset(name, random_weights=True, force_masks=args.regions, max_masks=args.regions,
                           pred_iou_thresh=0.0, stability_score_thresh=0.0, device=args.device))
    _, t_frame = timed(lambda: pipe.process(s.rgb, queries=["red mug"]), dev, 3)
    added = t_target + t_msgs + (t_stats - t_median)
    report = {
        "device": device_name(dev),
        "frame": "640x480", "cloud_points": len(host.points),
        "target_geometry_ms": round(t_target, 2), "target_messages_ms": round(t_msgs, 2),
        "region_median_only_ms": round(t_median, 2), "region_median_and_extent_ms": round(t_stats, 2),
        "regions": args.regions, "pipeline_frame_ms": round(t_frame, 1), "pipeline_preset": name,
        "added_ms_per_frame": round(added, 2), "added_share_of_frame": round(added / t_frame, 4),
    }
    print(json.dumps(report, indent=1))
    write_report(report, dev, "geometry")


if __name__ == "__main__":
    main()
