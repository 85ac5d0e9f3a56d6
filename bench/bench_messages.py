"""The publish stage's message building for one frame, alone: RegionArray and the markers, build and serialize.

    python bench/bench_messages.py [--regions 64] [--rounds 5] [--old-tree /path/to/old/checkout] [--json F]

Every message the publish stage builds is Python holding the GIL beside the inference thread
(docs/performance.md), so its CPU time per frame is what this measures. A synthetic 640x480 frame of
--regions regions (boxes tiling the image, random 0/1 masks, depth for all but one) is built into a
RegionArray and the MarkerArray (labels and back-projected boxes) as outputs.py builds them, then
serialized as rclpy does before publishing. With --old-tree, each round runs this checkout and that one
in turn, each in a fresh subprocess on the same frame, so machine noise falls on both; the report gives
the median of the rounds and this tree's time over the old one's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(regions: int):
    """FrameOutputs of ``regions`` boxes tiling a 640x480 image, built from plain arrays (no pipeline)."""
    import numpy as np

    from textregion_ros.compose import FrameOutputs

    rng = np.random.default_rng(0)
    cols = int(np.ceil(np.sqrt(regions)))
    w, h = 640 // cols, 480 // cols
    boxes = np.array([[x * w, y * h, x * w + w, y * h + h] for y, x in (divmod(i, cols) for i in range(regions))])
    crops = [(rng.random((h, w)) > 0.3).astype(np.uint8).ravel() for _ in range(regions)]
    points = rng.uniform(0.3, 3.0, (regions, 3)).astype(np.float32)
    points[0] = np.nan  # one region without valid depth
    return FrameOutputs(label=rng.integers(0, 10, regions), prob=rng.random(regions).astype(np.float32),
                        cosine=rng.random(regions).astype(np.float32), boxes=boxes.astype(np.int64),
                        area=np.array([int(c.sum()) for c in crops]), points=points,
                        sizes=rng.random((regions, 3)).astype(np.float32), crop_data=np.concatenate(crops),
                        crop_start=np.arange(regions) * (w * h),
                        colors=rng.integers(0, 256, (regions, 3)).astype(np.uint8),
                        track_ids=np.arange(1, regions + 1, dtype=np.uint32))


def measure(regions: int, reps: int) -> dict:
    """CPU ms per frame of each builder and of serializing its message, in this process."""
    import numpy as np
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    import textregion_ros.msg as trmsg
    from textregion_ros.ros import messages, viz

    out, header = frame(regions), Header(frame_id="camera")
    labels = [f"label{i}" for i in range(10)] + ["background"]
    names = [f"{labels[int(i)]} #{t}" for i, t in zip(out.label, out.track_ids)]
    K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])

    def markers():
        arr = viz.markers(header, names, out.points, out.points[1].tolist(), out.colors, lifetime_s=2.0)
        arr.markers.extend(viz.box_markers(header, out.boxes, out.points, K, out.colors, lifetime_s=2.0))
        return arr

    builders = {"regions": lambda: messages.region_array_msg(trmsg, labels, 1, out, header),
                "markers": markers}
    report = {}
    for name, build in builders.items():
        for _ in range(3):
            msg = build()
        t = time.process_time()
        for _ in range(reps):
            msg = build()
        built = time.process_time() - t
        t = time.process_time()
        for _ in range(reps):
            serialize_message(msg)
        report[name] = {"build_ms": round(1e3 * built / reps, 3),
                        "serialize_ms": round(1e3 * (time.process_time() - t) / reps, 3)}
    return report


def run_tree(tree: str, regions: int, reps: int) -> dict:
    """One measurement of ``tree``'s builders in a fresh process (this file, that tree's package)."""
    code = (f"import sys, json; sys.path.insert(0, {tree!r}); sys.path.insert(1, {os.path.dirname(__file__)!r}); "
            f"import bench_messages as b; print(json.dumps(b.measure({regions}, {reps})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: list) -> dict:
    return {name: {k: statistics.median(r[name][k] for r in runs) for k in runs[0][name]} for name in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", type=int, default=64)
    ap.add_argument("--reps", type=int, default=100, help="frames built per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="measurements per tree, taken in turns")
    ap.add_argument("--old-tree", help="another checkout, measured in turns with this one")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    trees = [("this", ROOT)] + ([("old", os.path.abspath(args.old_tree))] if args.old_tree else [])
    runs = {label: [] for label, _ in trees}
    for _ in range(args.rounds):
        for label, tree in trees:
            runs[label].append(run_tree(tree, args.regions, args.reps))
    report = {"what": "bench_messages: one frame's RegionArray and markers, CPU ms to build and to serialize",
              "regions": args.regions, "reps": args.reps, "rounds": args.rounds, "cpu_count": os.cpu_count(),
              "this": summarize(runs["this"]), "this_rounds": runs["this"]}
    if args.old_tree:
        report.update(old_tree=trees[1][1], old=summarize(runs["old"]), old_rounds=runs["old"])
        report["this_over_old"] = {name: {k: round(v / report["old"][name][k], 3) for k, v in part.items()}
                                   for name, part in report["this"].items()}
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_rounds")}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
