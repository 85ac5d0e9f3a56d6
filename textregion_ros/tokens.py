"""Region tokens: multi-resolution features pooled by region masks.

    image -> views (global + tiles) -> one batched encoder pass -> fused feature
    map -> mask weights on that grid -> global patch removal -> pooled tokens

Views are made as the official preprocessing makes them: torchvision's
``v2.Resize`` with antialiasing, bicubic or bilinear as the encoder's tag says,
and no clamping of the resized values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

from .config import auto_tiles, parse_tiles
from .encoders.base import ImageTextEncoder
from .pooling import fuse_multires_values, remove_global_patches, tile_boxes


@dataclass
class RegionTokens:
    tokens: torch.Tensor  # (K, E) L2-normalized
    kept: torch.Tensor  # (K,) indices into the input masks
    grid_hw: Tuple[int, int]


@dataclass(frozen=True)
class ViewPlan:
    """How one frame is cut into encoder views."""
    rescale_hw: Optional[Tuple[int, int]]  # the frame is first resized to this (the "auto" rule), or kept
    grid: Tuple[int, int]  # tile rows, cols; (0, 0) = the global view only


def plan_views(frame_hw: Tuple[int, int], tiles: str, crop: int) -> ViewPlan:
    fixed = parse_tiles(tiles)
    if fixed is not None:
        return ViewPlan(None, fixed)
    rescaled, grid = auto_tiles(frame_hw[0], frame_hw[1], crop)
    return ViewPlan(rescaled, grid)


def resize(images: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """torchvision v2.Resize((size, size), interpolation, antialias=True) on float images."""
    return F.interpolate(images, size=(size, size), mode=interpolation, align_corners=False, antialias=True)


def make_views(image01: torch.Tensor, size: int, plan: ViewPlan, use_global: bool,
               interpolation: str = "bicubic") -> torch.Tensor:
    """(3, H, W) float image in [0, 1] -> (V, 3, size, size): global view first, then tiles row-major."""
    if plan.rescale_hw is not None and tuple(plan.rescale_hw) != tuple(image01.shape[1:]):
        # mmcv imrescale (cv2 INTER_LINEAR): bilinear without antialiasing.
        image01 = F.interpolate(image01[None], size=plan.rescale_hw, mode="bilinear", align_corners=False)[0]
    rows, cols = plan.grid
    out = [resize(image01[None], size, interpolation)] if use_global else []
    if rows:
        crops = [image01[:, y0:y1, x0:x1] for y0, y1, x0, x1 in tile_boxes(image01.shape[1], image01.shape[2],
                                                                          rows, cols)]
        out.append(resize(torch.stack(crops), size, interpolation))  # tiles share one size: one call
    return torch.cat(out)


@dataclass
class FeatureMap:
    values: torch.Tensor  # (N, C) fused features on the patch grid
    grid_hw: Tuple[int, int]  # (rows*g, cols*g)
    multires: bool  # tiles were encoded (the official "multi_resolution" path)
    views: Any = None  # (ValueFeatures, ViewPlan) it was fused from, for a second head on the same pass


def encode_views(encoder: ImageTextEncoder, image01: torch.Tensor, tiles: str, use_global: bool):
    """-> (the encoder's ValueFeatures of every view, the ViewPlan)."""
    plan = plan_views((int(image01.shape[1]), int(image01.shape[2])), tiles, encoder.image_size)
    views = make_views(image01, encoder.image_size, plan, use_global, encoder.interpolation)
    return encoder.encode_values(encoder.normalize(views)), plan


def fuse(per_view: torch.Tensor, grid: int, plan: ViewPlan, use_global: bool, global_weight: float) -> FeatureMap:
    rows, cols = plan.grid
    values = fuse_multires_values(per_view, grid, rows, cols, use_global, global_weight)
    return FeatureMap(values, (rows * grid, cols * grid) if rows else (grid, grid), rows > 0)


def encode_value_map(encoder: ImageTextEncoder, image01: torch.Tensor, tiles: str, use_global: bool,
                     global_weight: float, keep_views: bool = False) -> FeatureMap:
    """-> fused features (N, C) on their grid; with ``keep_views`` also the per-view features they came
    from (otherwise freed here: with many views they are the pass's largest activations)."""
    feats, plan = encode_views(encoder, image01, tiles, use_global)
    fmap = fuse(feats.patch_values, feats.grid, plan, use_global, global_weight)
    if keep_views:
        fmap.views = (feats, plan)
    return fmap


def dense_embedding_map(encoder: ImageTextEncoder, image01: torch.Tensor, tiles: str, use_global: bool,
                        views=None) -> Optional[FeatureMap]:
    """Per-patch text-space embeddings (N, E) fused across views as the official ``get_CLIP_logits`` fuses
    its patch logits (global view upsampled and added with weight 1; logits are linear in the
    embeddings). None for a family without a dense head (only CLIP has one). ``views`` (a FeatureMap's, from
    the same image, tiles and global view) reuses that encoder pass instead of running another."""
    dense = getattr(encoder, "dense_embeddings", None)
    if dense is None:
        return None
    feats, plan = views if views is not None else encode_views(encoder, image01, tiles, use_global)
    return fuse(dense(feats), feats.grid, plan, use_global, 1.0)


def region_tokens(encoder: ImageTextEncoder, fmap: FeatureMap, weights: torch.Tensor, remove_global: bool = True,
                  threshold: float = 0.07, clip_head: str = "segmentation") -> RegionTokens:
    """Patch weights (R, N) on ``fmap.grid_hw`` -> one token per surviving region.

    ``clip_head="referring"`` is the official referring path for CLIP: the last block's MLP runs on
    the pooled token, and with multi-resolution views and global removal the fused values are
    L2-normalised per patch before pooling. TextRegionSegmenter normalises them in place, through a
    view, while scoring global patches; with one view its values are a copy and stay raw. We
    reproduce both cases.
    """
    referring = clip_head == "referring" and encoder.family == "clip"
    values, grid_hw = fmap.values, fmap.grid_hw
    if referring and remove_global and fmap.multires:
        values = F.normalize(values, dim=-1)
    if remove_global:
        weights, kept = remove_global_patches(values, weights, threshold)
    else:
        kept = torch.nonzero(weights.sum(-1) > 0).squeeze(-1)
        weights = weights[kept]
    if weights.shape[0] == 0:
        return RegionTokens(values.new_zeros((0, 0)).float(), kept, grid_hw)
    pooled = encoder.pool(values, encoder.region_attention(weights).to(values.dtype), use_mlp=referring)
    return RegionTokens(F.normalize(pooled.float(), dim=-1), kept, grid_hw)
