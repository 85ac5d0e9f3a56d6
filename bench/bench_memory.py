"""Cost of the object memory, in one run: fusion per frame, find latency, and memory over a long run.

    python bench/bench_memory.py [--objects 1000 10000] [--regions 64] [--frames 100000] [--old-tree DIR]
    python bench/bench_memory.py --replay RECORDING

* Fusion: a memory holding N objects (on a 0.5 m grid; each a 0.12 m box's surface, 2,000 points, a
  512-d token) fuses frames of R detections with a depth image and a camera looking at them, so
  association, the visibility check, noise and merging all run; at the default max_detection_points
  (512) a third of each detection's points are fused, and a last row fuses all 1,500. A detection is what one region of
  a VGA frame gives at depth_stride 2: 1,500 points on one 0.12 m face of an object (about 150
  voxels of 1 cm) with 3 mm noise, and its token jittered. Median and p95 of
  ObjectMemory.integrate over 30 frames.
* find: scoring the query against every remembered token by the grounding rule (classify.query_scores,
  one matmul) plus ranking, at N objects less a tenth removed (their rows left in the table, as a live map
  has them between compactions); median over 200 queries.
* Bounds: --frames frames of 4 small detections at new places and 4 large ones of the same four
  objects, with max_objects 1000 and max_points 500: new objects are created and evicted all run
  long, and the four seen every frame coarsen at the point bound. RSS is sampled every 10% of the run; the report
  gives the objects held, the evictions and the RSS growth over the second half.
* --replay RECORDING: only fuse the observations ``bench_node --proxy-gpu --memory-node`` recorded in its
  window, standalone (memory_replay.py): the in-node fusion time's twin on the same frames.
* --old-tree DIR: fusion at the smallest --objects, this checkout's and DIR's (another checkout, e.g. a
  git worktree of an earlier commit), each in its own process and taking turns, three rounds: on a
  shared machine whose speed drifts over minutes, the per-round ratio says more than either figure.
Writes bench/reports/<device>-memory.json (CPU only: the memory runs on the host).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import psutil
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from reports_io import device_name, write_report  # noqa: E402
from textregion_ros.classify import query_scores  # noqa: E402
from textregion_ros.encoders.text import LabelEmbeddings  # noqa: E402
from textregion_ros.geometry.transform import RigidTransform  # noqa: E402
from textregion_ros.memory import Detection, MemoryConfig, ObjectMemory, Observation, save_memory  # noqa: E402

DIM = 512


def unit(rng, n, dim: int = DIM):
    t = rng.standard_normal((n, dim)).astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


SIDE = 0.12


def box_surface(rng, n: int) -> np.ndarray:
    """``n`` points on the faces of a SIDE cube at the origin corner."""
    p = rng.uniform(0, SIDE, (n, 3))
    axis, side = rng.integers(0, 3, n), rng.integers(0, 2, n)
    p[np.arange(n), axis] = side * SIDE
    return p


def filled(n: int, rng, dim: int = DIM, **config) -> ObjectMemory:
    memory = ObjectMemory(MemoryConfig(min_observations=1, max_objects=max(n, 1), merge_every=0))
    side = int(np.ceil(np.sqrt(n)))
    centres = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n] * 0.5
    tokens = unit(rng, n, dim)
    for start in range(0, n, 256):
        dets = [Detection(tokens[i], box_surface(rng, 2000) + np.r_[centres[i], 0.0])
                for i in range(start, min(start + 256, n))]
        memory.integrate(Observation(start, "bench", RigidTransform.identity(), np.eye(3), None, dets))
    # The defaults from here on, except that nothing leaves during the measurement: the N objects count as
    # established, and the visibility check runs (and costs) but removes nothing.
    memory.config = MemoryConfig(max_objects=n * 2, miss_frames=100000, **config)
    for o in memory.objects.values():
        o.observations = 10
    return memory


def save_filled(path: str, n: int, dim: int, header: dict) -> str:
    """``filled`` (seed 0; empty for n = 0) saved as a memory file: what bench_node's node loads, and what
    memory_replay's standalone stage loads, so both start from the same objects."""
    save_memory(path, filled(n, np.random.default_rng(0), dim) if n else ObjectMemory(), header)
    return path


def live_tokens(memory: ObjectMemory):
    ids, tokens = memory.tokens()  # the table's rows: those of removed objects have id -1
    return ids[ids >= 0], tokens[ids >= 0]


def fusion(n: int, regions: int, rng, **config) -> dict:
    memory = filled(n, rng, **config)
    ids, tokens = live_tokens(memory)
    K = np.array([[262.5, 0, 159.5], [0, 262.5, 119.5], [0, 0, 1.0]])
    # A camera 3 m above the grid's first corner, looking down: some objects in view, most not.
    pose = RigidTransform(np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]]), np.array([1.5, 1.5, 3.0]))
    depth = np.full((240, 320), 3.0, np.float32)
    times = []
    for f in range(30):
        pick = rng.choice(len(ids), regions, replace=False)
        dets = []
        for j in pick:
            lo = memory.objects[ids[j]].bounds()[0]
            face = np.c_[rng.uniform(0, SIDE, (1500, 2)), np.full(1500, SIDE)]  # its top face
            p = lo + face + rng.normal(0, 0.003, (1500, 3))
            t = tokens[j] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
            dets.append(Detection(t / np.linalg.norm(t), p, "thing", 0.9))
        t0 = time.perf_counter()
        memory.integrate(Observation(10**9 + f, "bench", pose, K, depth, dets))
        times.append(time.perf_counter() - t0)
        ids, tokens = live_tokens(memory)
    times.sort()
    return {"objects": n, "regions": regions, "points_fused_per_detection": min(1500, memory.config.max_detection_points),
            "fuse_median_ms": 1e3 * statistics.median(times),
            "fuse_p95_ms": 1e3 * times[int(0.95 * (len(times) - 1))], "objects_after": len(memory)}


def find_latency(n: int, rng) -> dict:
    memory = filled(n, rng)
    # A tenth of them removed (as misses and noise remove them in a live map): their rows stay, uncompacted.
    memory._delete([int(i) for i in rng.choice(sorted(memory.objects), n // 10, replace=False)])
    background = LabelEmbeddings(("background",), torch.from_numpy(unit(rng, 3)), torch.zeros(3, dtype=torch.long))
    times = []
    for q in range(200):
        query = LabelEmbeddings((f"q{q}",), torch.from_numpy(unit(rng, 1)), torch.zeros(1, dtype=torch.long))
        t0 = time.perf_counter()
        ids, tokens = memory.tokens()
        probs, cos = query_scores(torch.from_numpy(tokens), query, background)
        memory.rank(ids, probs[:, 0].numpy(), cos[:, 0].numpy(), 10)
        times.append(time.perf_counter() - t0)
    return {"objects": len(memory), "table_rows": memory.table.n, "find_median_ms": 1e3 * statistics.median(times),
            "find_p95_ms": 1e3 * sorted(times)[int(0.95 * 199)]}


def bounds(frames: int, rng) -> dict:
    # Every object is kept (min_observations 1), so the memory fills to max_objects and evicts from then on;
    # four objects are seen in every frame with 2,000 new points each, so they coarsen at max_points.
    cfg = MemoryConfig(max_objects=1000, max_points=500, merge_every=50, min_observations=1)
    memory = ObjectMemory(cfg)
    proc = psutil.Process()
    samples = []
    steady = unit(rng, 4)
    t0 = time.perf_counter()
    for f in range(frames):
        centres = rng.uniform(-200, 200, (4, 3))
        dets = [Detection(unit(rng, 1)[0], c + rng.uniform(0, 0.2, (200, 3))) for c in centres]
        dets += [Detection(steady[k], np.array([k * 2.0, 0, 0]) + rng.uniform(0, 0.5, (2000, 3)))
                 for k in range(4)]
        memory.integrate(Observation(f, "bench", RigidTransform.identity(), np.eye(3), None, dets))
        if (f + 1) % max(frames // 10, 1) == 0:
            samples.append((f + 1, proc.memory_info().rss / 2**20, len(memory),
                            max((len(o.keys) for o in memory.objects.values()), default=0)))
    half = samples[len(samples) // 2 - 1][1]
    return {"frames": frames, "seconds": time.perf_counter() - t0, "max_objects": cfg.max_objects,
            "max_points": cfg.max_points, "objects_held": len(memory), "evicted": memory.counts["evicted"],
            "dropped_noise": memory.counts["dropped_noise"], "rss_mb_samples": [s[1] for s in samples],
            "largest_object_points": max(s[3] for s in samples),
            "rss_growth_second_half_mb": samples[-1][1] - half}


CHILD = """
import json, sys
import numpy as np, torch
sys.path[:0] = [{tree!r}, {tree!r} + "/bench"]
import bench_memory
torch.set_num_threads({threads})
print("RESULT " + json.dumps(bench_memory.fusion({n}, {regions}, np.random.default_rng(0))))
"""


def against(old_tree: str, n: int, regions: int, rounds: int = 3) -> dict:
    """Fusion medians of this checkout and ``old_tree``, alternating in fresh processes."""
    out = {"old_tree": old_tree, "objects": n, "regions": regions, "rounds": []}
    for _ in range(rounds):
        row = {}
        for name, tree in (("this", ROOT), ("old", os.path.abspath(old_tree))):
            code = CHILD.format(tree=tree, threads=os.cpu_count() or 1, n=n, regions=regions)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")]))
            p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            row[name] = json.loads(line[-1][7:])["fuse_median_ms"] if line else None
            if not line:
                print(p.stderr[-2000:], file=sys.stderr)
        row["this_over_old"] = row["this"] / row["old"] if row["this"] and row["old"] else None
        out["rounds"].append(row)
        print(row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--regions", type=int, default=64)
    ap.add_argument("--frames", type=int, default=100000)
    ap.add_argument("--old-tree", default=None)
    ap.add_argument("--replay", default=None, metavar="RECORDING",
                    help="only fuse a recording of the memory node's observations (memory_replay.py)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.replay:
        from memory_replay import replay
        print(json.dumps(replay(args.replay), indent=2))
        return
    rng = np.random.default_rng(0)
    report = {"device": device_name(torch.device("cpu")), "fusion": [], "find": []}
    for n in args.objects:
        report["fusion"].append(fusion(n, args.regions, rng))
        print(report["fusion"][-1], flush=True)
    # The same frames with every one of a detection's 1,500 points fused (no max_detection_points thinning).
    report["fusion"].append(fusion(min(args.objects), args.regions, rng, max_detection_points=1500))
    print(report["fusion"][-1], flush=True)
    report["find"].append(find_latency(max(args.objects), rng))
    print(report["find"][-1], flush=True)
    if args.old_tree:
        report["against_old_tree"] = against(args.old_tree, min(args.objects), args.regions)
    report["bounds"] = bounds(args.frames, rng)
    print(report["bounds"], flush=True)
    write_report(report, torch.device("cpu"), "memory")


if __name__ == "__main__":
    main()
