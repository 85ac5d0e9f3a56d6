"""Per-region 3D: robust median points and extents in the camera optical frame (REP-103: x right, y down, z forward)."""
from __future__ import annotations

import torch


def _backprojected(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int) -> torch.Tensor:
    """(R, 3, P) points of each mask's valid depth pixels, NaN elsewhere."""
    r, h, w = masks.shape
    if depth_m.shape != (h, w):
        raise ValueError(f"depth {tuple(depth_m.shape)} does not match masks {(h, w)}")
    m = masks[:, ::stride, ::stride]
    z = depth_m[::stride, ::stride].float()
    vs = torch.arange(0, h, stride, device=z.device, dtype=torch.float32)[:, None].expand_as(z)
    us = torch.arange(0, w, stride, device=z.device, dtype=torch.float32)[None, :].expand_as(z)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    xyz = torch.stack([(us - cx) * z / fx, (vs - cy) * z / fy, z])  # (3, h', w')
    valid = torch.isfinite(z) & (z > 0)
    sel = (m & valid[None]).flatten(1)  # (R, P)
    return torch.where(sel[:, None, :], xyz.flatten(1)[None], torch.full((), float("nan"), device=z.device))


# Extents are taken between these quantiles, so a few flying pixels at a mask's edge do not set them.
EXTENT_QUANTILES = (0.02, 0.98)


def region_stats(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int = 1):
    """Per region: the median 3D point (R, 3) and the axis-aligned extent (R, 3) between the 2nd and
    98th percentile of its points, in one batched quantile. NaN rows without valid depth."""
    r = masks.shape[0]
    if r == 0:
        z = torch.zeros((0, 3), device=masks.device)
        return z, z.clone()
    pts = _backprojected(masks, depth_m, K, stride)
    q = torch.tensor([EXTENT_QUANTILES[0], 0.5, EXTENT_QUANTILES[1]], device=pts.device)
    lo, med, hi = torch.nanquantile(pts, q, dim=-1)  # each (R, 3)
    return med, hi - lo


def region_points(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Median 3D point of the valid depth pixels inside each mask.

    masks (R, H, W) bool at the depth's resolution; depth_m (H, W) metres with
    NaN or 0 for holes; K (3, 3). Returns (R, 3) float, NaN rows where a mask
    has no valid depth. ``stride`` subsamples pixels; the median barely moves.
    """
    if masks.shape[0] == 0:
        return torch.zeros((0, 3), device=masks.device)
    return torch.nanmedian(_backprojected(masks, depth_m, K, stride), dim=-1).values  # all-NaN rows stay NaN
