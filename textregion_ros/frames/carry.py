"""The SAM2 carry (target_tracking sam2): between full frames, the active query's locked target is carried
by SAM2's memory attention (masks/sam2_propagate.py) instead of segmenting the frame.

A carry starts from a full frame whose active grounding is locked, after tracking (the lock comes from
the tracks). ``request`` may be called from the stage that tracks; the model work (``start`` and
``step``) runs on the thread that runs the frames, so SAM2's memory is never written by two threads.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Optional, Tuple

import torch

from ..masks.base import MaskSet
from ..results import FrameResult
from .image import image_to_tensor


class SamCarry:
    def __init__(self, propagator, device: torch.device):
        self.propagator, self.device = propagator, device
        self._target: Optional[Tuple[FrameResult, int]] = None  # the full frame and its carried grounding
        self._pending: Optional[tuple] = None  # (image, result, grounding index) or ("stop",)
        self._lock = threading.Lock()

    def carrying(self, query: str) -> bool:
        """Is ``query``'s target carried now (a step may still lose it)."""
        return self._target is not None and self._target[0].groundings[self._target[1]].query == query

    def request(self, image: Optional[torch.Tensor], result: FrameResult, query: str) -> None:
        """After a tracked full frame: carry ``query``'s grounding when it is locked, otherwise stop."""
        k = next((i for i, g in enumerate(result.groundings) if query and g.query == query), -1)
        start = k >= 0 and result.groundings[k].locked and image is not None
        with self._lock:
            self._pending = (image, result, k) if start else ("stop",)

    def apply(self) -> None:
        """Start or stop what ``request`` asked for (the frames' thread, before its next frame)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        if len(pending) == 1:
            self.stop()
        else:
            self.start(*pending)

    @torch.inference_mode()
    def start(self, image: torch.Tensor, result: FrameResult, grounding_index: int) -> None:
        """Carry ``result``'s grounding ``grounding_index`` from ``image`` ((H, W, 3) uint8 or (3, H, W))."""
        g = result.groundings[grounding_index]
        mask = result.masks.select(torch.tensor([g.region], device=self.device)).at_frame(result.frame_hw)[0] >= 0.5
        self.propagator.start(self.propagator.preprocess(image_to_tensor(image, self.device)), mask)
        self._target = (result, grounding_index)

    @torch.inference_mode()
    def step(self, image) -> Optional[FrameResult]:
        """This frame's mask of the carried target, as a one-region FrameResult of kind "propagated" whose only
        grounding is the target's (labels and scores from its full frame). None when nothing is carried or
        SAM2 lost the object (time for a full frame)."""
        if self._target is None:
            return None
        t0 = time.perf_counter()
        logits = self.propagator.step(self.propagator.preprocess(image_to_tensor(image, self.device)))
        if logits is None or not bool((logits > 0).any()):
            self.stop()
            return None
        full, k = self._target
        g = full.groundings[k]
        i = torch.tensor([g.region], device=self.device)
        masks = MaskSet(logits[0].float(), full.masks.scores[i], full.frame_hw, {"propagated": 1}, is_logits=True)
        c = full.classes
        return replace(full, masks=masks, tokens=full.tokens[i],
                       classes=type(c)(c.label[i], c.prob[i], c.cosine[i], c.cosines[i]), queries=(g.query,),
                       query_embeddings=None, groundings=[replace(g, region=0)],
                       track_ids=full.track_ids[[g.region]] if full.track_ids is not None else None,
                       timings={"propagate": time.perf_counter() - t0}, kind="propagated")

    def stop(self) -> None:
        self._target = None
        self.propagator.reset()
