"""Cost of region tracking per frame, against the pipeline's own frame time, in one run.

    python bench/bench_tracking.py [--regions 24 64 128] [--frames 50] [--device cpu|cuda]

For each region count, a sequence of frames is made of that many moving discs as SAM2-style
low-resolution mask logits (128x128 for a 512 SAM2 input) with 512-d tokens, and timed through
``Tracker.update`` (association: prediction, IoU/coverage, cosine, Hungarian assignment, state
update) and through ``Pipeline.track`` (association plus relabelling from the smoothed tokens and
the target locks). The reference frame time is the same run's ``cpu-lite`` (CPU) or ``realtime``
(CUDA) pipeline with exactly that many regions forced, on a 640x480 frame. Random weights:
timings are valid, labels are not. Writes bench/reports/<device>-tracking.json.
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

from reports_io import device_name, write_report  # noqa: E402
from textregion_ros.classify import Classification  # noqa: E402
from textregion_ros.config import preset  # noqa: E402
from textregion_ros.masks.base import MaskSet  # noqa: E402
from textregion_ros.pipeline import Pipeline  # noqa: E402
from textregion_ros.results import FrameResult, groundings_from  # noqa: E402
from textregion_ros.eval.scene import make_scene  # noqa: E402
from textregion_ros.tracks.locks import TargetLocks  # noqa: E402
from textregion_ros.tracks.tracker import Tracker  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def disc_frames(r: int, frames: int, dev, dim: int = 512, grid: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    centre = rng.uniform(8, grid - 8, (r, 2))
    vel = rng.uniform(-2.5, 2.5, (r, 2))  # up to ~12 px per frame at 640 wide
    radius = rng.uniform(3, 10, r)
    tok = torch.nn.functional.normalize(torch.randn(r, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)
    yy, xx = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    out = []
    for f in range(frames):
        span = grid - 16.0  # bounce between the borders (a triangle wave), so every disc stays in view
        c = (centre - 8 + f * vel) % (2 * span)
        c = torch.tensor(8 + np.where(c > span, 2 * span - c, c), dtype=torch.float32)
        d = ((xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2).sqrt()
        logits = (torch.tensor(radius, dtype=torch.float32)[:, None, None] - d)  # > 0 inside
        perm = torch.as_tensor(rng.permutation(r))
        out.append((logits[perm].to(dev), tok[perm].to(dev)))
    return out


def as_result(pipe, logits, tokens, hw=(480, 640)):
    from textregion_ros.classify import classify
    vocab = pipe.vocab
    cls = classify(tokens, vocab.label_emb, pipe.config.region_logit_scale, pipe.encoder.sigmoid_logit())
    q = pipe.embed_queries(["red mug"])
    r = len(tokens)
    assert isinstance(cls, Classification)
    return FrameResult(frame_hw=hw, masks=MaskSet(logits, torch.ones(r, device=tokens.device), hw, is_logits=True),
                       tokens=tokens, classes=cls, labels=vocab.labels, num_background=vocab.num_background,
                       queries=("red mug",), groundings=groundings_from(q.labels, pipe.ground(tokens, q)), vocab=vocab,
                       query_embeddings=q)


def sam2_target_rate(name, device, dev, scene, frames: int = 6, every: int = 3) -> dict:
    """Grounded-target updates per second: full frames only, against target_tracking sam2."""
    from textregion_ros.eval.scene import make_scene

    pipe = Pipeline(preset(name, random_weights=True, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           abstain_threshold=0.0, target_tracking="sam2", device=device, max_masks=24))
    tracker, locks = Tracker(), TargetLocks()
    from textregion_ros.frames.carry import SamCarry
    carry = SamCarry(pipe.propagator, pipe.device)
    full, carried = [], []
    for f in range(frames + 1):
        rgb = make_scene(shift=2 * f).rgb
        sync(dev)
        t0 = time.perf_counter()
        r = pipe.track(pipe.process(rgb, queries=["red mug"]), tracker, locks)
        if r.groundings and r.groundings[0].locked:
            carry.start(rgb, r, 0)
        sync(dev)
        full.append(time.perf_counter() - t0)
    # The propagator's step is timed directly: random SAM2 weights often lose the object, which
    # would end SamCarry.step() early; the work per carried frame is the same either way.
    from textregion_ros.pipeline import image_to_tensor
    prop = pipe.propagator
    if not prop.started:
        prop.start(prop.preprocess(image_to_tensor(scene.rgb, pipe.device)),
                   torch.from_numpy(scene.object_mask))
    for f in range(frames + 1):
        rgb = make_scene(shift=2 * f + 1).rgb
        sync(dev)
        t0 = time.perf_counter()
        prop.step(prop.preprocess(image_to_tensor(rgb, pipe.device)))
        sync(dev)
        carried.append(time.perf_counter() - t0)
    t_full, t_prop = statistics.median(full[1:]), statistics.median(carried[1:] or carried)
    return {"full_frame_ms_p50": round(t_full * 1e3, 1), "propagated_frame_ms_p50": round(t_prop * 1e3, 1),
            "target_updates_per_s_full_frames_only": round(1.0 / t_full, 2),
            f"target_updates_per_s_sam2_every_{every}": round(every / (t_full + (every - 1) * t_prop), 2),
            "sam2_input": pipe.config.sam2_input_size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--regions", type=int, nargs="+", default=[24, 64, 128])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--pipeline-frames", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = "realtime" if dev.type == "cuda" else "cpu-lite"
    torch.manual_seed(0)
    rows = []
    scene = make_scene()
    for r in args.regions:
        pipe = Pipeline(preset(name, random_weights=True, force_masks=r, max_masks=r, pred_iou_thresh=0.0,
                               stability_score_thresh=0.0, remove_global_patches=False, device=args.device))
        # The reference: this run's pipeline on a 640x480 frame with exactly r regions.
        ft = []
        for _ in range(args.pipeline_frames + 1):
            sync(dev)
            t0 = time.perf_counter()
            pipe.process(scene.rgb, queries=["red mug"])
            sync(dev)
            ft.append(time.perf_counter() - t0)
        frame_ms = statistics.median(ft[1:]) * 1e3
        seq = disc_frames(r, args.frames, dev)
        results = [as_result(pipe, lg, tk) for lg, tk in seq]
        tr = Tracker()
        assoc = []
        for res in results:
            sync(dev)
            t0 = time.perf_counter()
            tr.update(res)
            sync(dev)
            assoc.append(time.perf_counter() - t0)
        tr2, locks = Tracker(), TargetLocks()
        full = []
        for res in results:
            sync(dev)
            t0 = time.perf_counter()
            out = pipe.track(res, tr2, locks)
            _ = out.groundings
            sync(dev)
            full.append(time.perf_counter() - t0)
        confirmed = int((out.track_ids > 0).sum())
        a_ms = statistics.median(assoc[2:]) * 1e3
        f_ms = statistics.median(full[2:]) * 1e3
        row = {"regions": r, "association_ms_p50": round(a_ms, 3),
               "association_ms_p95": round(float(np.percentile(np.array(assoc[2:]) * 1e3, 95)), 3),
               "track_total_ms_p50": round(f_ms, 3), "pipeline_frame_ms_p50": round(frame_ms, 1),
               "association_share_of_frame": round(a_ms / frame_ms, 4),
               "track_total_share_of_frame": round(f_ms / frame_ms, 4),
               "confirmed_tracks_last_frame": confirmed}
        rows.append(row)
        print(json.dumps(row))
    rate = sam2_target_rate(name, args.device, dev, scene)
    print(json.dumps(rate))
    report = {"device": device_name(dev), "preset_reference": name, "frames": args.frames, "rows": rows,
              "sam2_target_tracking": rate}
    write_report(report, dev, "tracking")


if __name__ == "__main__":
    main()
