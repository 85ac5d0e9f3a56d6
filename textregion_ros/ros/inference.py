"""The inference stage: takes the newest frame, runs it as the camera's scheduler says, hands over.

It never waits for publishing: the result goes into the publish slot, where a newer result
replaces one the publish stage has not taken yet (counted as dropped_publish).
"""
from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .context import NodeContext
from .convert import ImageError, frame_to_rgb8, stamp_ns
from .handover import Processed
from .intake import Frame
from .stage import Stage
from .text_stage import TextStage


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


class InferenceStage(Stage):
    """One stage for every camera: the models run one frame at a time, taken fairly (round robin over the
    cameras with a frame waiting, each at most its max_rate), so a silent or hostile camera never holds
    back another."""

    def __init__(self, ctx: NodeContext, cameras: List["Camera"], text: TextStage, arrived: threading.Event):
        super().__init__(ctx, "textregion-inference")
        self.cameras, self.text, self.arrived = cameras, text, arrived
        self.updates = RuntimeUpdates()
        self._next = 0  # the camera asked first next time

    def _wake(self) -> None:
        for cam in self.cameras:
            cam.intake.slot.close()
        self.arrived.set()

    def _take(self) -> Optional[Tuple["Camera", Frame]]:
        """The next camera's frame: one camera waits on its slot (as it always has); several are asked in turn
        without waiting, and the stage sleeps on the shared arrival event when none has a frame it may take."""
        max_rate = self.ctx.settings.max_rate
        if len(self.cameras) == 1:
            cam = self.cameras[0]
            if max_rate > 0:  # wait first, then take: the frame taken is the newest
                wait = cam.last_start + 1.0 / max_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            frame = cam.intake.take(0.1)
            return (cam, frame) if frame is not None else None
        self.arrived.clear()
        now, n, soonest = time.monotonic(), len(self.cameras), 0.1
        for k in range(n):
            cam = self.cameras[(self._next + k) % n]
            wait = cam.last_start + 1.0 / max_rate - now if max_rate > 0 else 0.0
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            frame = cam.intake.take(0)
            if frame is not None:
                self._next = (self._next + k + 1) % n
                return cam, frame
        self.arrived.wait(soonest)
        return None

    def _loop(self) -> None:
        while self.worker.running:
            taken = self._take()
            if taken is None:
                continue
            cam, frame = taken
            try:
                cam.last_start = time.monotonic()
                if frame.seq != frame.newest:
                    cam.ctx.stats.count("frames/not_newest")  # never expected: the slot holds one frame
                self.run(cam, frame)
            except Exception as exc:  # the node must survive anything a frame can do
                if not self.worker.running:
                    return  # shutting down: nothing to report
                cam.ctx.stats.count("errors/inference")
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                self.ctx.logger.error(f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            finally:
                cam.intake.slot.done()

    def _admit(self, cam: "Camera", frame: Frame) -> Optional[np.ndarray]:
        """The frame as rgb8, or None when it is too old, nobody listens or it cannot be decoded."""
        ctx, s = cam.ctx, cam.ctx.settings
        t_ns = stamp_ns(frame.msg.header.stamp)  # validated on arrival
        if s.max_age > 0 and ctx.now_ns() - t_ns > s.max_age * 1e9:
            ctx.stats.count("dropped_old")
            return None
        frame.demanded = cam.demand.is_set()
        cam.demand.clear()
        if not frame.demanded and not cam.publisher.wanted():
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

    def run(self, cam: "Camera", frame: Frame) -> None:
        t0 = time.perf_counter()
        rgb = self._admit(cam, frame)
        if rgb is None:
            return
        self._apply_updates()
        pipeline, queries = self.ctx.pipeline, self.text.queries
        image = torch.from_numpy(rgb).to(pipeline.device, non_blocking=True)
        t1 = time.perf_counter()
        # The camera's scheduler (frames/schedule.py) decides the frame's kind; a service answers on a full one.
        result = cam.schedule.step(pipeline, image, queries.embeddings, queries.active or None, frame.demanded)
        if result.tokens.is_cuda:
            torch.cuda.synchronize(result.tokens.device)  # so the pipeline/overhead split is honest
        t2 = time.perf_counter()
        cam.ctx.stats.count(f"frames/{result.kind}")
        cam.ctx.stats.on_processed(time.perf_counter() - t0, t2 - t1)
        done = Processed(result, image, frame.msg, queries, stamp_ns(frame.msg.header.stamp),
                         result.kind != "full", demanded=frame.demanded, camera=cam.name, depths=frame.depths)
        if cam.slot.put(done):
            cam.ctx.stats.count("dropped_publish")  # the publish stage fell behind: newest wins
