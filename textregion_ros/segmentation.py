"""Which kind of frame comes next under the ``segmentation`` knob, and what a target frame prompts with.

* everything: every frame is full (SAM2's whole point grid).
* target: a frame with a query is a target frame (target_frame.py); one without falls back to full.
* hybrid: a full frame every ``hybrid_every`` frames, and the frame after one where the watched query
  (the node's active query; every query when none is named) was not found; target frames between.

The previous frame's box of each found query goes into the next target frame's prompts.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from .masks.base import boxes_from_masks
from .results import FrameResult


class FrameSchedule:
    def __init__(self) -> None:
        self.since_full = 0  # target frames since the last full one
        self.lost = True  # the watched query was not found on the last frame (or nothing ran yet)
        self.boxes: Dict[str, torch.Tensor] = {}  # query -> (4,) xyxy frame pixels, on the device

    def next_is_full(self, mode: str, every: int, has_query: bool) -> bool:
        if mode == "everything" or not has_query:
            return True
        if mode == "target":
            return False
        return self.lost or self.since_full + 1 >= every

    def done(self, result: FrameResult, watch: Optional[str] = None) -> None:
        """After each frame: count, note whether the watched query was found, keep the found queries' boxes."""
        self.since_full = 0 if result.kind == "full" else self.since_full + 1
        watched = [g for g in result.groundings if watch is None or g.query == watch]
        self.lost = not watched or not all(g.found for g in watched)
        found = [g for g in result.groundings if g.found and 0 <= g.region < len(result.masks)]
        self.boxes = {}
        if found:
            index = torch.tensor([g.region for g in found], device=result.masks.masks.device)
            binary = result.masks.select(index).at_frame(result.frame_hw) >= 0.5
            boxes = boxes_from_masks(binary)
            self.boxes = {g.query: b for g, b in zip(found, boxes) if bool(b[2] > b[0])}


def run_frame(pipeline, image, query_embeddings, schedule: FrameSchedule, watch: Optional[str] = None,
              force_full: bool = False) -> FrameResult:
    """One frame as the knob says: full (Pipeline.process) or target (Pipeline.process_target), then the
    schedule learns from it. The node's inference stage and the benchmark both go through here."""
    cfg = pipeline.config
    has_query = query_embeddings is not None and len(query_embeddings) > 0
    full = force_full or schedule.next_is_full(cfg.segmentation, cfg.hybrid_every, has_query)
    if full:
        result = pipeline.process(image, query_embeddings=query_embeddings)
    else:
        result = pipeline.process_target(image, query_embeddings, schedule.boxes)
    schedule.done(result, watch)
    return result
