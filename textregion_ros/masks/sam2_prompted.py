"""SAM2's prompt decoder on a frame's own image embedding: the masks for chosen points and boxes.

Target mode asks SAM2 only where the query points (positive points at the similarity map's peaks,
negatives at its lowest cells, the previous target's box). Each prompt is a set of points with
labels (1 positive, 0 negative, -1 padding) and an optional box; all prompts of a frame go through
sam2's own prompt encoder and mask decoder in one batch, multimask, on the image embedding that
``Sam2Everything.encode`` made for the frame. It is what ``SAM2ImagePredictor.predict`` does for
one prompt (a box enters as its two corners, labels 2 and 3, before the points), batched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .sam2_everything import ImageFeatures, Sam2Everything

PAD = -1  # a point label the prompt encoder ignores (fills prompts with fewer points)


@dataclass
class PromptMasks:
    low_res: torch.Tensor  # (B, K, 256, 256) logits, K = 3 multimask (or 1)
    iou: torch.Tensor  # (B, K) SAM2's predicted IoU

    def at_frame(self, sam: Sam2Everything, frame_hw: Tuple[int, int]) -> torch.Tensor:
        """(B, K, H, W) logits at frame resolution, upsampled as sam2's predictor does."""
        return sam.transforms.postprocess_masks(self.low_res, frame_hw)


class Sam2Prompted:
    """The Prompter (masks/base.py) of a built SAM2: the same model as everything-mode, no second copy."""

    def __init__(self, everything: Sam2Everything):
        self.sam = everything  # its model, transforms, positional encoding and no-mask embedding

    def encode(self, image01: torch.Tensor) -> ImageFeatures:
        return self.sam.encode(image01)

    def prompt(self, feats: ImageFeatures, points: torch.Tensor, labels: torch.Tensor, frame_hw: Tuple[int, int],
               boxes: Optional[torch.Tensor] = None) -> PromptMasks:
        return self.decode(feats, points, labels, frame_hw, boxes, self.sam.multimask)

    def to_prompt_frame(self, xy: torch.Tensor, frame_hw: Tuple[int, int]) -> torch.Tensor:
        """Frame pixels (x, y) -> the prompt encoder's own frame (input_image_size, 1024 whatever the input)."""
        h, w = frame_hw
        in_h, in_w = self.sam.model.sam_prompt_encoder.input_image_size
        return xy / torch.tensor([w, h], dtype=xy.dtype, device=xy.device) * torch.tensor(
            [in_w, in_h], dtype=xy.dtype, device=xy.device)

    @torch.inference_mode()
    def decode(self, feats: ImageFeatures, points: torch.Tensor, labels: torch.Tensor, frame_hw: Tuple[int, int],
               boxes: Optional[torch.Tensor] = None, multimask: bool = True) -> PromptMasks:
        """``points`` (B, N, 2) frame pixels, ``labels`` (B, N) 1 / 0 / PAD, ``boxes`` (B, 4) xyxy frame pixels
        or None -> masks for the B prompts in one decoder batch. Every prompt of a batch has a box or none
        does: extra tokens change what the decoder attends to, so prompts with and without a box are decoded
        in separate batches (the caller groups them), each exactly as the predictor decodes it alone."""
        sam, dev = self.sam, self.sam.device
        coords = self.to_prompt_frame(points.to(dev, torch.float32), frame_hw)
        labels = labels.to(dev, torch.int)
        if boxes is not None:
            boxes = boxes.to(dev, torch.float32)
            if not torch.isfinite(boxes).all():
                raise ValueError("boxes must be finite (decode prompts without a box in their own batch)")
            corners = self.to_prompt_frame(boxes.reshape(-1, 2, 2), frame_hw)
            corner_labels = torch.tensor([2, 3], dtype=torch.int, device=dev).expand(len(boxes), 2)
            coords, labels = torch.cat([corners, coords], 1), torch.cat([corner_labels, labels], 1)
        low, iou = sam.prompts(feats, coords, labels, multimask)
        return PromptMasks(low.float(), iou.float())
