"""Masks the caller supplies (a detector, an annotation, a user's click)."""
from __future__ import annotations

from typing import Optional

import torch

from .base import MaskSet


def given_masks(masks: torch.Tensor, scores: Optional[torch.Tensor] = None) -> MaskSet:
    """(R, H, W) bool or float masks at frame resolution -> MaskSet."""
    if not torch.is_tensor(masks) or masks.ndim != 3:
        raise ValueError("given masks must be an (R, H, W) tensor")
    soft = masks.float()
    if soft.numel() and (soft.min() < 0 or not torch.isfinite(soft).all()):
        raise ValueError("given masks must be finite and non-negative")
    r, h, w = soft.shape
    if scores is None:
        scores = torch.ones(r, device=soft.device)
    if scores.shape != (r,):
        raise ValueError(f"scores must have shape ({r},), got {tuple(scores.shape)}")
    return MaskSet(masks=soft, scores=scores.float(), frame_hw=(h, w), counts={"kept": r})


class GivenMasks:
    """A MaskSource that returns whatever masks were last set (for a fixed scene or tests)."""
    name = "given"
    knobs: dict = {}  # reads no knob: the masks are given

    @classmethod
    def from_config(cls, config, device) -> "GivenMasks":
        return cls()

    def __init__(self, masks: Optional[torch.Tensor] = None):
        self.masks = masks

    def generate(self, image01: torch.Tensor) -> MaskSet:
        if self.masks is None:
            raise RuntimeError("no masks were given; pass masks to Pipeline.process(..., masks=...)")
        if tuple(self.masks.shape[-2:]) != tuple(image01.shape[-2:]):
            raise ValueError("given masks do not match the frame size")
        return given_masks(self.masks.to(image01.device))
