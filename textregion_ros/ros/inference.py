"""The inference stage: takes the newest frame, runs the pipeline (or carries the target), hands over.

It never waits for publishing: the result goes into the publish slot, where a newer result
replaces one the publish stage has not taken yet (counted as dropped_publish).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

from ..results import FrameResult
from ..segmentation import FrameSchedule, run_frame
from .context import NodeContext
from .convert import ImageError, frame_to_rgb8, stamp_ns
from .handover import LatestSlot
from .intake import Frame, Intake
from .stage import StageThread
from .text_stage import QuerySet, TextStage
from .tracks import Tracks


@dataclass
class Processed:
    result: FrameResult
    image: Optional[torch.Tensor]  # (H, W, 3) uint8 on the device
    msg: object  # the image message (its header; its size for camera_info checks)
    queries: QuerySet
    stamp_ns: int
    partial: bool = False  # not a full frame: target mode's candidates, or the target SAM2 carried (result.kind)
    depth: object = None  # sensor_msgs/Image matched at publish time (Intake.match_depth), or None
    K: Optional[np.ndarray] = None
    demanded: bool = False  # processed for a service call while no output had a reader

    @property
    def header(self):
        return self.msg.header


class RuntimeUpdates:
    """Pipeline knobs changed at runtime, applied by the inference stage between frames."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Dict[str, object] = {}

    def put(self, updates: Dict[str, object]) -> None:
        with self._lock:
            self._pending.update(updates)

    def take(self) -> Dict[str, object]:
        with self._lock:
            out, self._pending = self._pending, {}
            return out


class InferenceStage:
    def __init__(self, ctx: NodeContext, intake: Intake, text: TextStage, tracks: Tracks,
                 wanted: Callable[[], bool], out: LatestSlot):
        self.ctx, self.intake, self.text, self.tracks = ctx, intake, text, tracks
        self.wanted = wanted  # does any output have a subscriber
        self.out = out
        self.updates = RuntimeUpdates()
        self._since_full = 0  # frames carried by SAM2 since the last full frame
        self.schedule = FrameSchedule()  # segmentation target / hybrid: which frames are full
        # Set by a service call: the next frame is processed even when no output has a reader.
        self.demand = threading.Event()
        self.worker = StageThread("textregion-inference", self._loop)
        self.start = self.worker.start

    def stop(self) -> None:
        self.worker.stop(self.intake.slot.close)

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def _loop(self) -> None:
        last_start = 0.0
        while self.worker.running:
            max_rate = self.ctx.settings.max_rate
            if max_rate > 0:  # wait first, then take: the frame taken is the newest
                wait = last_start + 1.0 / max_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            frame = self.intake.take(0.1)
            if frame is None:
                continue
            try:
                last_start = time.monotonic()
                if frame.seq != frame.newest:
                    self.ctx.stats.count("frames/not_newest")  # never expected: the slot holds one frame
                self.run(frame)
            except Exception as exc:  # the node must survive anything a frame can do
                if not self.worker.running:
                    return  # shutting down: nothing to report
                self.ctx.stats.count("errors/inference")
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                self.ctx.logger.error(f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            finally:
                self.intake.slot.done()

    def _admit(self, frame: Frame) -> Optional[np.ndarray]:
        """The frame as rgb8, or None when it is too old, nobody listens or it cannot be decoded."""
        ctx, s = self.ctx, self.ctx.settings
        t_ns = stamp_ns(frame.msg.header.stamp)  # validated on arrival
        if s.max_age > 0 and ctx.now_ns() - t_ns > s.max_age * 1e9:
            ctx.stats.count("dropped_old")
            return None
        frame.demanded = self.demand.is_set()
        self.demand.clear()
        if not frame.demanded and not self.wanted():
            ctx.stats.count("idle_skipped")
            ctx.stats.set_flag("idle", "true")
            return None
        ctx.stats.set_flag("idle", "false")
        try:
            return frame_to_rgb8(frame.msg)
        except ImageError as exc:
            ctx.bad_input(exc.reason, str(exc))
            return None

    def _apply_updates(self) -> None:
        updates = self.updates.take()
        if updates:
            with self.ctx.config_lock:
                self.ctx.pipeline.update(**updates)
            self.ctx.logger.info(f"applied parameter updates: {sorted(updates)}")

    def run(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        rgb = self._admit(frame)
        if rgb is None:
            return
        self._apply_updates()
        pipeline, queries = self.ctx.pipeline, self.text.queries
        image = torch.from_numpy(rgb).to(pipeline.device, non_blocking=True)
        t1 = time.perf_counter()
        result, partial = self._infer(image, queries, frame.demanded)
        if result.tokens.is_cuda:
            torch.cuda.synchronize(result.tokens.device)  # so the pipeline/overhead split is honest
        t2 = time.perf_counter()
        self.ctx.stats.count(f"frames/{result.kind}")
        if not partial and pipeline.propagator is not None:  # sam2 mode needs the lock now, to carry the target
            result = self.tracks.update(result)
            self._carry_target(image, result, queries)
        self.ctx.stats.on_processed(time.perf_counter() - t0, t2 - t1)
        done = Processed(result, image, frame.msg, queries, stamp_ns(frame.msg.header.stamp), partial,
                         demanded=frame.demanded)
        if self.out.put(done):
            self.ctx.stats.count("dropped_publish")  # the publish stage fell behind: newest wins

    def _infer(self, image: torch.Tensor, queries: QuerySet, demanded: bool):
        pipeline = self.ctx.pipeline
        cfg = pipeline.config
        if cfg.segmentation != "everything":  # target or hybrid (segmentation.py); a service answers on a full frame
            result = run_frame(pipeline, image, queries.embeddings, self.schedule, queries.active or None, demanded)
            return result, result.kind != "full"
        carry = pipeline.propagator is not None and not demanded  # a service answers on a full frame
        if carry and self._since_full + 1 < self.ctx.settings.propagate_every:
            carried = pipeline.propagate_target(image)  # None when nothing is carried or it was lost
            if carried is not None and carried.queries == (queries.active,):
                self._since_full += 1
                return carried, True
        return pipeline.process(image, query_embeddings=queries.embeddings), False

    def _carry_target(self, image: torch.Tensor, result: FrameResult, queries: QuerySet) -> None:
        """After a full frame: with target_tracking sam2, SAM2 carries the active query's locked target."""
        self._since_full = 0
        groundings = result.groundings
        if queries.active and groundings and groundings[-1].locked and self.ctx.settings.propagate_every > 1:
            self.ctx.pipeline.start_target(image, result, len(groundings) - 1)
        else:
            self.ctx.pipeline.stop_target()
