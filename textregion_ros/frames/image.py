"""A camera frame as every model takes it: (3, H, W) float in [0, 1] on the device, within the size limits."""
from __future__ import annotations

import numpy as np
import torch

from ..config import MAX_PIXELS, MIN_SIDE


def image_to_tensor(image, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB array or tensor, or (3, H, W) float tensor in [0, 1] -> (3, H, W) float on device."""
    if isinstance(image, np.ndarray):
        if not (image.flags.writeable and image.flags.c_contiguous):
            image = np.ascontiguousarray(image).copy()
        image = torch.from_numpy(image)
    if not torch.is_tensor(image):
        raise ValueError(f"image must be a numpy array or tensor, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == torch.uint8:
        image = image.to(device, non_blocking=True).permute(2, 0, 1).float().div_(255.0)
    elif image.ndim == 3 and image.shape[0] == 3 and image.is_floating_point():
        image = image.to(device).float()
    else:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB or (3, H, W) float in [0, 1]; "
                         f"got shape {tuple(image.shape)} dtype {image.dtype}")
    h, w = image.shape[1:]
    if h < MIN_SIDE or w < MIN_SIDE or h * w > MAX_PIXELS:
        raise ValueError(f"image size {w}x{h} is outside {MIN_SIDE}x{MIN_SIDE} .. {MAX_PIXELS} pixels")
    return image
