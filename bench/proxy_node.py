"""The node as launched, with a GPU-like stand-in for its pipeline and its composition (bench_node --proxy-gpu).

    python bench/proxy_node.py --ros-args ...      # the node's own arguments, as textregion_node takes them

On a GPU the pipeline is hundreds of short kernel launches a frame, each releasing the GIL and winning it back,
and composing is device work. On this CPU the real pipeline and composition are seconds of tensor work, which
would hide the host's own cost. So here:

- ``FrameScheduler.step`` runs the real pipeline once (random weights, the forced number of regions), keeps
  that full-frame result, and from then on returns a copy of it after ``PROXY_STEP_OPS`` small torch ops
  (64x64 matmul + tanh on one thread): a GPU-like frame, calibrated in this process to ``PROXY_FRAME_MS``.
- ``compose`` does the same per kind of request: the real composition once, then the recorded host arrays
  after ``PROXY_COMPOSE_OPS`` small ops (composing at frame size is a few kernels on a GPU).
- the tracker's association (``Tracker.update``: mask overlaps, shifts and dilations on the association grid,
  about 18 ms of CPU tensor work a frame at 64 regions, a few dozen kernels on a GPU) runs for real on the
  first frames, then returns its recorded update after ``PROXY_TRACK_OPS`` small ops: the recorded frame is the
  same every time, so the real tracker would give the same ids. Labels, groundings and locks stay real.

Everything else is the product's code: the intake, the scheduler's thread, tracking, the messages, the memory,
the executor. What it measures is the host's Python and the GIL beside a launch-bound device pipeline.
The stand-in's own rate is measured by ``solo()`` in a process of its own beside the same camera.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --old-tree: the node's package from that checkout, this stand-in for both (the same stand-in is compared).
sys.path.insert(0, os.environ.get("PROXY_TREE", ROOT))

FRAME_MS = float(os.environ.get("PROXY_FRAME_MS", "20"))  # the realtime preset's pipeline on a GPU
COMPOSE_OPS = int(os.environ.get("PROXY_COMPOSE_OPS", "60"))  # compose's kernels (masks, boxes, copies)
TRACK_OPS = int(os.environ.get("PROXY_TRACK_OPS", "60"))  # the tracker's association kernels
TRACK_REAL_FRAMES = 5  # real tracker updates before its recorded one is replayed (tracks confirmed by then)


class GpuLike:
    """Small torch ops on one thread: each call releases the GIL and must win it back, like a kernel launch."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 64, generator=g)
        self.w = torch.randn(64, 64, generator=g) * 0.1

    def run(self, ops: int) -> None:
        x = self.x
        for _ in range(ops // 2):
            x = torch.tanh(x @ self.w)

    def calibrate(self, frame_ms: float) -> int:
        """Ops for ``frame_ms`` alone in this process (best of five, so a busy moment does not inflate it)."""
        self.run(200)
        best = min(self._time(400) for _ in range(5))
        return max(2, int(round(frame_ms * 1e-3 / best * 400)))

    def _time(self, ops: int) -> float:
        t = time.perf_counter()
        self.run(ops)
        return time.perf_counter() - t


def install(step_ops: int) -> None:
    """Replace the scheduler's step and the publish stage's compose with the recorded stand-ins."""
    from textregion_ros.frames import schedule
    from textregion_ros.ros import publish

    gpu, real_step, real_compose = GpuLike(), schedule.FrameScheduler.step, publish.compose
    recorded, composed = {}, {}

    def step(self, pipeline, image, query_embeddings, watch=None, force_full=False):
        if "result" not in recorded:
            recorded["result"] = real_step(self, pipeline, image, query_embeddings, watch, True)
        gpu.run(step_ops)
        r = recorded["result"]
        return dataclasses.replace(r, timings=dict(r.timings), track_ids=None, kind="full")

    def compose(result, image, req):
        key = (req.instance, req.crops, req.overlay, req.depth is not None, req.target, req.grounded)
        if key not in composed:
            composed[key] = real_compose(result, image, req)
        gpu.run(COMPOSE_OPS)
        out = composed[key]
        return dataclasses.replace(out, timings={}, track_ids=result.track_ids)

    schedule.FrameScheduler.step = step
    publish.compose = compose
    install_tracker(gpu)


def install_tracker(gpu: GpuLike) -> None:
    from textregion_ros.tracks import tracker

    real_update = tracker.Tracker.update

    def update(self, result):
        seen = self.__dict__.setdefault("_proxy_updates", [0, None])  # per tracker: each camera has its own
        seen[0] += 1
        if seen[0] <= TRACK_REAL_FRAMES:
            seen[1] = real_update(self, result)
            return seen[1]
        gpu.run(TRACK_OPS)
        return tracker.TrackUpdate(seen[1].track_ids.copy(), seen[1].tokens.clone())

    tracker.Tracker.update = update


def solo(seconds: float) -> dict:
    """The stand-in's own rate: frames of ``step_ops`` back to back in this process, nothing else in it."""
    torch.set_num_threads(1)
    gpu = GpuLike()
    ops = gpu.calibrate(FRAME_MS)
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        gpu.run(ops)
        gpu.run(COMPOSE_OPS + TRACK_OPS)  # on a GPU composing and tracking share the device with the next frame
        times.append(time.perf_counter() - t)
    times.sort()
    return {"ops_per_frame": ops, "compose_ops": COMPOSE_OPS, "track_ops": TRACK_OPS, "frames": len(times),
            "frame_ms_p50": round(1e3 * times[len(times) // 2], 2), "fps": round(len(times) / seconds, 2)}


def main() -> int:
    if sys.argv[1:2] == ["--solo"]:
        print(json.dumps(solo(float(sys.argv[2]))), flush=True)
        return 0
    torch.set_num_threads(1)  # the stand-in is device work: it must not occupy this CPU's other core too
    ops = int(os.environ.get("PROXY_STEP_OPS", "0")) or GpuLike().calibrate(FRAME_MS)
    print(f"proxy: {ops} small ops a frame (about {FRAME_MS:.0f} ms alone), {COMPOSE_OPS} for compose", flush=True)
    install(ops)
    from textregion_ros.ros.node import main as node_main

    return node_main()


if __name__ == "__main__":
    sys.exit(main())
