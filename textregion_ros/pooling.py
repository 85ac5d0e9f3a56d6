"""Pure tensor functions between masks and value features (no models).

Everything here is batched over regions; shapes are noted as
R regions, N patches, C channels.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F


def masks_to_patch_weights(masks: torch.Tensor, grid_hw: Tuple[int, int]) -> torch.Tensor:
    """(R, h, w) soft masks -> (R, N) weights on the patch grid.

    Bilinear downsampling then clamping to [0, 1], as TextRegion does; soft
    masks may exceed 1 before the clamp (SAM2 logits clipped at 3).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (R, h, w), got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return masks.new_zeros((0, grid_hw[0] * grid_hw[1]))
    low = F.interpolate(masks[:, None].float(), size=grid_hw, mode="bilinear", align_corners=False)
    return low.flatten(1).clamp_(0.0, 1.0)


def resize_matrix(n_in: int, n_out: int, device=None) -> torch.Tensor:
    """(n_out, n_in): 1-D linear resampling exactly as F.interpolate(align_corners=False) does it.

    Bilinear resizing is separable, so a 2-D resize is M -> A_h @ M @ A_w^T with these matrices.
    """
    eye = torch.eye(n_in, device=device)[:, None, :]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0, :].T.contiguous()


def resampled_patch_weights(masks: torch.Tensor, frame_hw: Tuple[int, int],
                            grid_hw: Tuple[int, int]) -> torch.Tensor:
    """Low-resolution masks (R, h, w) -> (R, N) weights as the official code computes them.

    The official code upsamples SAM2's clipped logits to the frame, then downsamples them to the
    patch grid (both bilinear), then clamps to [0, 1]. Composing the two resizes per axis gives the
    same weights without ever holding R frame-sized masks.
    """
    r, h, w = masks.shape
    if r == 0:
        return masks.new_zeros((0, grid_hw[0] * grid_hw[1]))
    dev = masks.device
    cy = resize_matrix(frame_hw[0], grid_hw[0], dev) @ resize_matrix(h, frame_hw[0], dev)  # (gh, h)
    cx = resize_matrix(frame_hw[1], grid_hw[1], dev) @ resize_matrix(w, frame_hw[1], dev)  # (gw, w)
    low = torch.einsum("gh,rhw,kw->rgk", cy, masks.float(), cx)
    return low.flatten(1).clamp_(0.0, 1.0)


def patch_belonging_score(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per patch: mean similarity to the regions containing it minus to those that don't.

    values (N, C) value features, weights (R, N) with no empty rows.
    A patch's similarity to a region is its mean cosine to the region's patches.
    """
    feats = F.normalize(values.float(), dim=-1)
    inside = (weights > 0).float()  # (R, N)
    # (N, N) @ (N, R) written as f @ (f^T @ inside^T): O(NCR) instead of O(N^2 C).
    patch_to_region = feats @ (feats.T @ inside.T) / inside.sum(-1)  # (N, R)
    n_in = inside.sum(0)
    n_out = inside.shape[0] - n_in
    belong = (patch_to_region * inside.T).sum(-1) / (n_in + 1e-9)
    outside = (patch_to_region * (1.0 - inside).T).sum(-1) / (n_out + 1e-9)
    return belong - outside


def remove_global_patches(
    values: torch.Tensor, weights: torch.Tensor, threshold: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Zero global patches in every region; drop regions left empty.

    Returns (weights of the kept regions, indices of the kept regions into the input).
    """
    nonempty = torch.nonzero(weights.sum(-1) > 0).squeeze(-1)
    weights = weights[nonempty]
    if weights.shape[0] == 0:
        return weights, nonempty
    score = patch_belonging_score(values, weights)
    weights = weights * (score >= threshold).to(weights.dtype)[None, :]
    kept = torch.nonzero(weights.sum(-1) > 0).squeeze(-1)
    return weights[kept], nonempty[kept]


def tile_boxes(height: int, width: int, rows: int, cols: int) -> List[Tuple[int, int, int, int]]:
    """Crop boxes (y0, y1, x0, x1) of a rows x cols tiling, row-major.

    Tiles are ceil-sized and the last ones slide back inside the image, as in
    the TextRegion reference, so every tile has the same size.
    """
    th, tw = -(-height // rows), -(-width // cols)
    boxes = []
    for r in range(rows):
        y1 = min((r + 1) * th, height)
        y0 = max(y1 - th, 0)
        for c in range(cols):
            x1 = min((c + 1) * tw, width)
            x0 = max(x1 - tw, 0)
            boxes.append((y0, y1, x0, x1))
    return boxes


def fuse_multires_values(
    values: torch.Tensor,
    grid: int,
    rows: int,
    cols: int,
    has_global: bool,
    global_weight: float,
) -> torch.Tensor:
    """(1 + rows*cols or rows*cols, grid*grid, C) per-view values -> (rows*grid * cols*grid, C).

    The global view's value map is bilinearly upsampled to the tiled grid,
    scaled by ``global_weight`` and added to the tiles. Without tiles the
    global view's values are returned as they are.
    """
    n_views, n, c = values.shape
    if n != grid * grid:
        raise ValueError(f"expected {grid * grid} patches per view, got {n}")
    if rows == 0:
        if not has_global or n_views != 1:
            raise ValueError("global-only encoding needs exactly one view")
        return values[0]
    n_tiles = rows * cols
    if n_views != n_tiles + int(has_global):
        raise ValueError(f"expected {n_tiles + int(has_global)} views, got {n_views}")
    tiles = values[int(has_global):].reshape(rows, cols, grid, grid, c)
    fused = tiles.permute(0, 2, 1, 3, 4).reshape(rows * grid, cols * grid, c)
    if has_global:
        g = values[0].reshape(1, grid, grid, c).permute(0, 3, 1, 2)
        up = F.interpolate(g.float(), size=(rows * grid, cols * grid), mode="bilinear", align_corners=False)
        fused = fused + global_weight * up[0].permute(1, 2, 0).to(fused.dtype)
    return fused.reshape(rows * grid * cols * grid, c)


def mask_pool_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of values: (R, N) x (N, C) or (R, H, N) x (H, N, C/H) per head -> (R, C)."""
    if weights.ndim == 2:
        return weights.to(values.dtype) @ values
    r, h, n = weights.shape
    per_head = values.reshape(n, h, -1).transpose(0, 1)  # (H, N, C/H)
    out = torch.einsum("rhn,hnd->rhd", weights.to(values.dtype), per_head)
    return out.reshape(r, -1)


def uniform_in_mask(weights: torch.Tensor) -> torch.Tensor:
    """Attention that is uniform over the patches with weight > 0 (rows of zeros stay zero)."""
    inside = (weights > 0).to(weights.dtype)
    return inside / inside.sum(-1, keepdim=True).clamp_min(1.0)


def group_max(scores: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(..., S) scores and (S,) group ids -> (..., G) max over each group's members."""
    out = scores.new_full((*scores.shape[:-1], n_groups), float("-inf"))
    index = group.expand_as(scores)
    return out.scatter_reduce(-1, index, scores, reduce="amax", include_self=True)
