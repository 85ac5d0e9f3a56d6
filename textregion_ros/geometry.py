"""Depth to 3D: robust per-region points in the camera optical frame (REP-103: x right, y down, z forward)."""
from __future__ import annotations

import torch


def region_points(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Median 3D point of the valid depth pixels inside each mask.

    masks (R, H, W) bool at the depth's resolution; depth_m (H, W) metres with
    NaN or 0 for holes; K (3, 3). Returns (R, 3) float, NaN rows where a mask
    has no valid depth. ``stride`` subsamples pixels; the median barely moves.
    """
    r, h, w = masks.shape
    if depth_m.shape != (h, w):
        raise ValueError(f"depth {tuple(depth_m.shape)} does not match masks {(h, w)}")
    if r == 0:
        return torch.zeros((0, 3), device=masks.device)
    m = masks[:, ::stride, ::stride]
    z = depth_m[::stride, ::stride].float()
    vs = torch.arange(0, h, stride, device=z.device, dtype=torch.float32)[:, None].expand_as(z)
    us = torch.arange(0, w, stride, device=z.device, dtype=torch.float32)[None, :].expand_as(z)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    xyz = torch.stack([(us - cx) * z / fx, (vs - cy) * z / fy, z])  # (3, h', w')
    valid = torch.isfinite(z) & (z > 0)
    sel = (m & valid[None]).flatten(1)  # (R, P)
    pts = torch.where(sel[:, None, :], xyz.flatten(1)[None], torch.full((), float("nan"), device=z.device))
    return torch.nanmedian(pts, dim=-1).values  # (R, 3); all-NaN rows stay NaN
