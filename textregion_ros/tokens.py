"""Region tokens: multi-resolution value features pooled by region masks.

    image -> views (global + tiles) -> one batched encoder pass -> fused value
    map -> mask weights on that grid -> global patch removal -> pooled tokens
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from .encoders.base import ImageTextEncoder
from .pooling import fuse_multires_values, masks_to_patch_weights, remove_global_patches, tile_boxes


@dataclass
class RegionTokens:
    tokens: torch.Tensor  # (K, E) L2-normalized
    kept: torch.Tensor  # (K,) indices into the input masks
    grid_hw: Tuple[int, int]


def make_views(image01: torch.Tensor, size: int, tiles: Tuple[int, int], use_global: bool) -> torch.Tensor:
    """(3, H, W) float image in [0, 1] -> (V, 3, size, size): global view first, then tiles row-major."""
    rows, cols = tiles
    crops = [image01] if use_global else []
    for y0, y1, x0, x1 in (tile_boxes(image01.shape[1], image01.shape[2], rows, cols) if rows else []):
        crops.append(image01[:, y0:y1, x0:x1])
    # Tiles share one size, so at most two resize calls (global + stacked tiles).
    out = [F.interpolate(crops[0][None], size=(size, size), mode="bicubic", align_corners=False)] if use_global else []
    if rows:
        tiles_t = torch.stack(crops[int(use_global):])
        out.append(F.interpolate(tiles_t, size=(size, size), mode="bicubic", align_corners=False))
    return torch.cat(out).clamp_(0.0, 1.0)


def encode_value_map(encoder: ImageTextEncoder, image01: torch.Tensor, tiles: Tuple[int, int],
                     use_global: bool, global_weight: float) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """-> fused patch values (N, C) and their grid (rows*g, cols*g)."""
    views = make_views(image01, encoder.image_size, tiles, use_global)
    feats = encoder.encode_values(encoder.normalize(views))
    rows, cols = tiles
    g = feats.grid
    values = fuse_multires_values(feats.patch_values, g, rows, cols, use_global, global_weight)
    grid_hw = (rows * g, cols * g) if rows else (g, g)
    return values, grid_hw


def region_tokens(encoder: ImageTextEncoder, values: torch.Tensor, grid_hw: Tuple[int, int],
                  masks: torch.Tensor, remove_global: bool = True, threshold: float = 0.07,
                  use_mlp: bool = False) -> RegionTokens:
    """Soft masks (R, h, w) over the image -> one token per surviving region."""
    weights = masks_to_patch_weights(masks, grid_hw)
    if remove_global:
        weights, kept = remove_global_patches(values, weights, threshold)
    else:
        kept = torch.nonzero(weights.sum(-1) > 0).squeeze(-1)
        weights = weights[kept]
    if weights.shape[0] == 0:
        return RegionTokens(values.new_zeros((0, 0)).float(), kept, grid_hw)
    pooled = encoder.pool(values, encoder.region_attention(weights).to(values.dtype), use_mlp=use_mlp)
    return RegionTokens(F.normalize(pooled.float(), dim=-1), kept, grid_hw)
