"""The publish stage: tracks (the only place frames are tracked), composes once on the device, and builds
what someone reads.

It runs beside the inference stage: frame t is composed and published while frame t+1 is
inferred. Which outputs to build comes from the outputs table and the publishers' subscriber
counts; what to compose is the union of those outputs' needs.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..compose import FrameOutputs, compose
from .context import NodeContext
from .convert import ImageError, depth_to_meters
from .handover import LatestSlot, Processed
from .loading import release_free_memory
from .observation import encoder_id
from .stage import SlotStage
from .outputs import (DEPTH, FRAME_OUTPUTS, INSTANCE, TARGET, FrameView, Output, compose_request, listening,
                      needs_depth)
from .tracks import Tracks

BEST_FEEDS = ("grounded", "grounded_point")  # the outputs grounded_best (best.py) is built from

# After frames this large, hand freed heap back to the OS: glibc keeps freed arena memory otherwise,
# and one 4000x4000 frame would leave the process hundreds of MB larger for good.
TRIM_PIXELS = 4_000_000


class PublishStage(SlotStage):
    def __init__(self, ctx: NodeContext, tracks: Tracks, publishers: Dict[str, object], frames, slot: LatestSlot,
                 intake, camera: str = "", schedule=None):
        super().__init__(ctx, f"textregion-publish{'-' + camera if camera else ''}", slot, "publish", 0.1)
        self.tracks, self.publishers, self.frames = tracks, publishers, frames
        self.intake = intake  # depth is matched here, when it is needed: a driver may send it after the image
        self.memory = None  # the MemoryStage when memory is on: it takes each full frame's regions and depth
        self.last: Optional[Tuple[Processed, FrameOutputs]] = None  # the newest full frame, for the services
        self._last_cv = threading.Condition()
        self._periods: deque = deque(maxlen=21)
        self.camera = camera
        self.schedule = schedule  # the camera's FrameScheduler: told of each tracked full frame (the SAM2 carry)
        self.on_frame = None  # called with each published frame's (item, view): the node's across-camera outputs
        self.also_wanted = lambda: False  # does an across-camera output have a reader (grounded_best)

    def listening(self, row: Output) -> bool:
        return listening(row, self.publishers, self.ctx.settings)

    def wait_last(self, min_stamp_ns: int, timeout: float) -> Optional[Tuple[Processed, FrameOutputs]]:
        """The newest full frame once one stamped ``min_stamp_ns`` or later is published (or the timeout)."""
        with self._last_cv:
            self._last_cv.wait_for(lambda: self.last is not None and self.last[0].stamp_ns >= min_stamp_ns, timeout)
            return self.last

    def wanted(self) -> bool:
        """Does any output have a reader, or is the memory on (otherwise the inference stage idles)."""
        return self.memory is not None or self.also_wanted() or any(self.listening(r) for r in FRAME_OUTPUTS)

    def handle(self, item: Optional[Processed]) -> None:
        if item is not None:
            self.publish(item)

    # --- one frame ---
    def _depth_meters(self, item: Processed) -> Optional[np.ndarray]:
        """The matched depth in metres on the host, once a frame: composition takes it to the device, and the
        observation row reads it as it is. None (counted) when it is unreadable or not the image's size."""
        if item.depth is None:
            return None
        try:
            depth = depth_to_meters(item.depth)
        except ImageError as exc:
            self.ctx.warn(f"depth/{exc.reason}", f"unreadable depth: {exc}")
            return None
        if depth.shape != tuple(item.result.frame_hw):
            self.ctx.warn("depth/size_mismatch", f"depth {depth.shape[::-1]} does not match the image "
                                                 f"{tuple(item.result.frame_hw)[::-1]}; 3D values are NaN")
            return None
        return depth

    def _view(self, item: Processed, rows: List[Output]) -> Tuple[FrameView, FrameOutputs]:
        s = self.ctx.settings
        extra = frozenset({DEPTH} if item.demanded else ())  # a service reply carries the regions' 3D
        if self.memory is not None and not item.partial:
            extra |= {DEPTH, INSTANCE}  # the memory fuses each region's depth points
        depth_wanted = needs_depth(rows, extra)
        depth = None
        if depth_wanted:
            item.depth, item.K = self.intake.match_depth(item.msg, item.depths)
            depth = self._depth_meters(item)
        view = FrameView(item.result, None, item.header, s, item.K, self.frames.resolve, self.marker_lifetime(),
                         self.ctx.random_weights, bool(item.queries.active), depth, item.queries.active,
                         encoder_id(self.ctx.pipeline.config))
        g = view.active_grounding
        target = g is not None and g.found and any(TARGET in r.needs for r in rows)  # only for a found target
        device_depth = torch.from_numpy(depth).to(self.ctx.pipeline.device, non_blocking=True) \
            if depth is not None else None
        req = compose_request(rows, target, device_depth, item.K, s, g.region if g else -1, extra)
        view.out = compose(item.result, item.image, req)
        return view, view.out

    def publish(self, item: Processed) -> None:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        if not item.partial:  # the one place frames are tracked, whatever the frame kinds
            item.result = self.tracks.update(item.result)
            if self.schedule is not None:
                self.schedule.tracked(item.image, item.result, item.queries.active)
        t1 = time.perf_counter()
        rows = [r for r in FRAME_OUTPUTS if self.listening(r) and item.result.kind in r.kinds]
        # grounded_best is made of this frame's grounded and grounded_point: compose what they need.
        feeds = [r for r in FRAME_OUTPUTS if r.name in BEST_FEEDS] if self.also_wanted() else []
        view, out = self._view(item, rows + [r for r in feeds if r not in rows])
        parts = {"compose": time.perf_counter() - t1}
        if not item.partial:  # before publishing: a client that saw this frame can ground on it
            with self._last_cv:
                self.last = (item, out)
                self._last_cv.notify_all()
            if self.memory is not None:
                self.memory.offer(item, out)
        if out.points is not None and len(out):
            missing = int((~np.isfinite(out.points[:, 2])).sum())
            if missing:
                self.ctx.stats.count("depth/region_without_valid_depth", missing)
        published: List[str] = []
        for row in rows:
            t = time.perf_counter()
            msg = row.build(view)
            if msg is not None:
                self.publishers[row.name].publish(msg)
                published.append(row.name)
            parts[row.name] = time.perf_counter() - t
        if self.on_frame is not None:
            self.on_frame(item, view)
        self._finish(item, out, t0, cpu0, published, parts)

    def _finish(self, item: Processed, out: FrameOutputs, t0: float, cpu0: float, published, parts) -> None:
        # Keep what the services need, not the frame-sized arrays (a mask is recomputed on request).
        out.instance = out.overlay = out.crop_data = out.target = None
        item.image = None
        result = item.result
        if result.frame_hw[0] * result.frame_hw[1] >= TRIM_PIXELS:
            release_free_memory()
        self._periods.append(time.monotonic())
        latency = max((self.ctx.now_ns() - item.stamp_ns) * 1e-9, 0.0)
        parts["track"] = result.timings.get("track", 0.0) if not item.partial else 0.0
        self.ctx.stats.on_published(latency, time.perf_counter() - t0, published, parts,
                                    cpu_s=time.thread_time() - cpu0)

    def marker_lifetime(self) -> float:
        """Markers outlive the gap to the next frame, so a slow device does not make them blink. The
        median interval: one idle gap (nobody listened for a minute) must not stretch it to 60 s."""
        if len(self._periods) < 2:
            return 2.0
        ts = list(self._periods)
        period = statistics.median(b - a for a, b in zip(ts, ts[1:]))
        return float(min(max(3.0 * period, 0.5), 60.0))
