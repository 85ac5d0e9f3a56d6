"""The one scheduler of frame kinds: each frame of a camera is full, target or propagated, decided here.

* full: SAM2 segments everything (Pipeline.process). Always without a query, and on a frame a service
  asked for (``force_full``).
* target (``segmentation`` target, or hybrid between full frames): the queries' patch maps place SAM2's
  prompts and each query grounds among its own candidates (target.py).
* propagated (``target_tracking`` sam2 between full frames): the active query's locked target is carried
  by SAM2's memory (carry.py); when SAM2 loses it, the frame is full after all.

One knob, ``full_every``, says how often a full frame comes in both hybrid and carry mode. Hybrid also
goes full on the frame after one where the watched query (the node's active query; every query when none
is named) was not found. The previous frame's box of each found query goes into the next target frame's
prompts.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..masks.base import boxes_from_masks
from ..results import FrameResult
from .carry import SamCarry
from .image import image_to_tensor
from .target import target_frame

FULL, TARGET, PROPAGATED = "full", "target", "propagated"
KINDS = (FULL, TARGET, PROPAGATED)


class FrameScheduler:
    """One camera's frames, in order: which kind each is, and running it on the shared models."""

    def __init__(self, carry: Optional[SamCarry] = None) -> None:
        self.carry = carry  # with target_tracking sam2 (one camera: the carried target is SAM2's one memory)
        self.since_full = 0  # frames since the last full one
        self.lost = True  # the watched query was not found on the last frame (or nothing ran yet)
        self.boxes: Dict[str, torch.Tensor] = {}  # query -> (4,) xyxy frame pixels, on the device

    def kind(self, cfg, has_query: bool, watch: Optional[str] = None, force_full: bool = False) -> str:
        """The next frame's kind under the config's ``segmentation`` and ``full_every``."""
        if force_full or not has_query:
            return FULL
        due = self.since_full + 1 >= cfg.full_every
        if cfg.segmentation == "target":
            return TARGET
        if cfg.segmentation == "hybrid":
            return FULL if self.lost or due else TARGET
        carried = self.carry is not None and watch is not None and self.carry.carrying(watch)
        return PROPAGATED if carried and not due else FULL

    def step(self, pipeline, image, query_embeddings, watch: Optional[str] = None,
             force_full: bool = False) -> FrameResult:
        """One frame of the kind ``kind()`` names. ``image``: (H, W, 3) uint8 or (3, H, W) float."""
        if self.carry is not None:
            self.carry.apply()  # a start or stop asked for after the last full frame was tracked
        has_query = query_embeddings is not None and len(query_embeddings) > 0
        kind = self.kind(pipeline.config, has_query, watch, force_full)
        result = None
        if kind == PROPAGATED:
            result = self.carry.step(image)  # None: SAM2 lost the target, so the frame is full
        elif kind == TARGET:  # kind() names it only with a query
            result = target_frame(pipeline.target_parts(), image_to_tensor(image, pipeline.device),
                                  query_embeddings, self.boxes)
        if result is None:
            result = pipeline.process(image, query_embeddings=query_embeddings)
        self.done(result, watch, boxes=pipeline.config.segmentation != "everything")
        return result

    def done(self, result: FrameResult, watch: Optional[str] = None, boxes: bool = True) -> None:
        """After each frame: count, note whether the watched query was found, keep the found queries' boxes
        (``boxes``: only target frames use them, and they cost a mask at frame size each)."""
        self.since_full = 0 if result.kind == FULL else self.since_full + 1
        watched = [g for g in result.groundings if watch is None or g.query == watch]
        self.lost = not watched or not all(g.found for g in watched)
        found = [g for g in result.groundings if g.found and 0 <= g.region < len(result.masks)] if boxes else []
        self.boxes = {}
        if found:
            index = torch.tensor([g.region for g in found], device=result.masks.masks.device)
            binary = result.masks.select(index).at_frame(result.frame_hw) >= 0.5
            boxes = boxes_from_masks(binary)
            self.boxes = {g.query: b for g, b in zip(found, boxes) if bool(b[2] > b[0])}

    def tracked(self, image, result: FrameResult, watch: str) -> None:
        """A full frame after tracking (the lock is known only then): carry its locked target, or stop."""
        if self.carry is not None and result.kind == FULL:
            self.carry.request(image, result, watch)

