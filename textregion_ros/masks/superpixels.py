"""SLIC superpixels (scikit-image) as hard region masks; no model, CPU."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import MaskSet, check_image


class Superpixels:
    name = "superpixels"
    knobs = {"superpixel_segments": "n_segments"}

    @classmethod
    def from_config(cls, config, device) -> "Superpixels":
        return cls(n_segments=config.superpixel_segments)

    def __init__(self, n_segments: int = 64, compactness: float = 10.0, work_size: int = 256):
        self.n_segments = n_segments
        self.compactness = compactness
        self.work_size = work_size

    def generate(self, image01: torch.Tensor) -> MaskSet:
        from skimage.segmentation import slic

        check_image(image01)
        h, w = image01.shape[1:]
        small = F.interpolate(image01[None].float(), size=(self.work_size, self.work_size), mode="bilinear",
                              align_corners=False)[0]
        labels = slic(small.permute(1, 2, 0).cpu().numpy().astype(np.float64), n_segments=self.n_segments,
                      compactness=self.compactness, start_label=0)
        lab = torch.as_tensor(labels, device=image01.device)
        ids = torch.unique(lab)
        masks = (lab[None] == ids[:, None, None]).float()
        return MaskSet(masks=masks, scores=torch.ones(len(ids), device=image01.device), frame_hw=(h, w),
                       counts={"kept": len(ids)})
