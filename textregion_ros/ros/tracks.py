"""One camera's state over time: region tracks and each query's locked target.

Full frames reach it in order from one stage only, the publish stage (off the critical path), in every
mode: with target_tracking sam2 the lock it gives is handed back to the camera's frame scheduler.
"""
from __future__ import annotations

import time

from ..results import FrameResult
from ..tracks.locks import TargetLocks
from ..tracks.tracker import Tracker
from .context import NodeContext
from .settings import tracker_config


class Tracks:
    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        s = ctx.settings
        self.tracker = Tracker(tracker_config(s))
        self.locks = TargetLocks(s.lock_margin, s.lock_frames)

    def update(self, result: FrameResult) -> FrameResult:
        """Track ids, smoothed labels and locked targets (settings changed at runtime apply here);
        with tracking off, the tracks and locks start again empty."""
        s = self.ctx.settings
        if not s.tracking:
            self.reset()
            return result
        cfg = tracker_config(s)
        if cfg != self.tracker.config:
            self.tracker.config = cfg
        self.locks.configure(s.lock_margin, s.lock_frames)
        t0 = time.perf_counter()
        result = self.ctx.pipeline.track(result, self.tracker, self.locks)
        result.timings["track"] = time.perf_counter() - t0
        return result

    def reset(self) -> None:
        self.tracker.reset()
        self.locks.reset()
