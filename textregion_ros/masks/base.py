"""The mask-source seam: anything that turns a frame into soft region masks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Protocol, Tuple

import torch
import torch.nn.functional as F

from ..pooling import masks_to_patch_weights, resampled_patch_weights


@dataclass
class MaskSet:
    """Region masks covering the whole frame, at whatever resolution the source works in.

    ``masks`` are either mask logits (SAM2, ``is_logits``) or soft masks in
    [0, 1] (superpixels, given masks), on a grid that spans the frame.
    Consumers resample them: to the patch grid as pooling weights (TextRegion
    clips logits to [0, 3] before downsampling and to [0, 1] after), or to the
    frame as probabilities (sigmoid of logits, so 0.5 is SAM2's own threshold).
    """
    masks: torch.Tensor  # (R, h, w) float
    scores: torch.Tensor  # (R,) mask quality (SAM2 predicted IoU; 1 for given masks)
    frame_hw: Tuple[int, int]
    counts: Dict[str, int] = field(default_factory=dict)  # masks left after each stage
    is_logits: bool = False

    def __len__(self) -> int:
        return self.masks.shape[0]

    def select(self, index: torch.Tensor) -> "MaskSet":
        return MaskSet(self.masks[index], self.scores[index], self.frame_hw, dict(self.counts), self.is_logits)

    def pooling_source(self) -> torch.Tensor:
        """Non-negative weights to downsample to the patch grid (clamped to [0, 1] after)."""
        return self.masks.clamp(0.0, 3.0) if self.is_logits else self.masks

    def patch_weights(self, grid_hw: Tuple[int, int]) -> torch.Tensor:
        """(R, N) pooling weights on the patch grid, as TextRegion computes them.

        SAM2 logits: clamp to [0, 3], upsample to the frame, downsample to the grid, clamp to
        [0, 1] (composed exactly, see pooling.resampled_patch_weights). Soft masks at their own
        resolution are downsampled directly.
        """
        if self.is_logits:
            return resampled_patch_weights(self.pooling_source(), self.frame_hw, grid_hw)
        return masks_to_patch_weights(self.masks, grid_hw)

    def at_frame(self, hw: Tuple[int, int] | None = None) -> torch.Tensor:
        """(R, H, W) mask probabilities in [0, 1] at frame resolution (computed on demand)."""
        hw = hw or self.frame_hw
        if len(self) == 0:
            return self.masks.new_zeros((0, *hw))
        up = F.interpolate(self.masks[:, None].float(), size=hw, mode="bilinear", align_corners=False)[:, 0]
        return up.sigmoid_() if self.is_logits else up.clamp_(0.0, 1.0)


class MaskSource(Protocol):
    name: str
    # The PipelineConfig knobs this source reads per frame -> its attribute of that name: Pipeline.update
    # sets them, so a runtime change reaches the source. Knobs a source does not list it does not use.
    knobs: Mapping[str, str]

    def generate(self, image01: torch.Tensor) -> MaskSet:
        """(3, H, W) float RGB image in [0, 1], on the source's device -> MaskSet."""
        ...


class Prompter(Protocol):
    """A mask source that also answers point and box prompts: target mode's seam (sam2_prompted.py)."""

    def encode(self, image01: torch.Tensor):
        """The frame's image features, made once and shared by every prompt of the frame."""
        ...

    def prompt(self, feats, points: torch.Tensor, labels: torch.Tensor, frame_hw: Tuple[int, int],
               boxes: Optional[torch.Tensor] = None):
        """``points`` (B, N, 2) frame pixels, ``labels`` (B, N) 1 / 0 / -1 (padding), ``boxes`` (B, 4) or None
        -> PromptMasks: (B, K, h, w) mask logits over the frame and (B, K) quality scores."""
        ...


def check_image(image01: torch.Tensor) -> None:
    if not torch.is_tensor(image01) or image01.ndim != 3 or image01.shape[0] != 3:
        raise ValueError("image must be a (3, H, W) float tensor in [0, 1]")
    if not image01.is_floating_point():
        raise ValueError(f"image must be float in [0, 1], got {image01.dtype}")
    if image01.shape[1] < 2 or image01.shape[2] < 2:
        raise ValueError(f"image is too small: {tuple(image01.shape)}")


def dilate(masks: torch.Tensor, cells: int) -> torch.Tensor:
    """(N, h, w) 0/1 float masks grown by ``cells`` in every direction (a square max filter), as a box
    sum > 0 from integral images: the cost does not grow with ``cells`` (a max filter costs k x k
    per pixel on the CPU)."""
    if cells <= 0 or len(masks) == 0:
        return masks
    k = 2 * cells + 1
    x = F.pad(masks, (cells + 1, cells, cells + 1, cells))
    x = x.cumsum(-1)
    x = x[..., k:] - x[..., :-k]
    x = x.cumsum(-2)
    x = x[..., k:, :] - x[..., :-k, :]
    return (x > 0.5).float()


def boxes_from_masks(binary: torch.Tensor) -> torch.Tensor:
    """(R, h, w) bool -> (R, 4) float xyxy boxes (exclusive max); zeros for empty masks."""
    r, h, w = binary.shape
    if r == 0:
        return binary.new_zeros((0, 4), dtype=torch.float32)
    rows, cols = binary.any(2), binary.any(1)
    ar_h = torch.arange(h, device=binary.device)
    ar_w = torch.arange(w, device=binary.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h + 1, 0).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w + 1, 0).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).float()
    return boxes * (rows.any(1)[:, None]).float()
