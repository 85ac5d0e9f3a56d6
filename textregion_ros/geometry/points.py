"""Per-region 3D: robust median points and extents in the camera optical frame (REP-103: x right, y down, z forward)."""
from __future__ import annotations

from typing import Sequence

import torch


def _grid_points(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int):
    """The strided pixel grid back-projected: (3, P) points, and (R, P) which of them each mask holds with
    valid depth."""
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
    return xyz.flatten(1), (m & valid[None]).flatten(1)


def _backprojected(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int) -> torch.Tensor:
    """(R, 3, P) points of each mask's valid depth pixels, NaN elsewhere."""
    xyz, sel = _grid_points(masks, depth_m, K, stride)
    return torch.where(sel[:, None, :], xyz[None], torch.full((), float("nan"), device=xyz.device))


def masked_quantiles(values: torch.Tensor, members: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """``torch.nanquantile(where(members, values, nan), q, dim=-1)`` (linear interpolation), per member set.

    values (C, P) float, members (R, P) bool -> (len(q), R, C); NaN where a set is empty. Instead of
    sorting R*C*P values, each of the C rows is sorted once and a set's k-th smallest value is found by
    counting its members along that order (a cumulative sum and a binary search): linear in R*P.
    """
    c_, p = values.shape
    r = members.shape[0]
    out = torch.full((len(q), r, c_), float("nan"), device=values.device, dtype=values.dtype)
    if r == 0 or p == 0:
        return out
    n = members.sum(-1)  # (R,)
    qs = torch.tensor(list(q), device=values.device, dtype=torch.float64)
    pos = qs[None, :] * (n[:, None] - 1).clamp(min=0).to(torch.float64)  # (R, Q) fractional rank
    lo, hi = pos.floor(), pos.ceil()
    weight = (pos - lo).to(values.dtype)
    # The k-th member (0-based) sits where the running member count first reaches k + 1.
    targets = (torch.cat([lo, hi], 1) + 1).to(torch.int32)  # (R, 2Q)
    order = values.argsort(dim=-1)  # (C, P)
    sorted_values = values.gather(-1, order)
    for c in range(c_):  # C is the coordinate count (3), not the region count
        running = members[:, order[c]].cumsum(-1, dtype=torch.int32)  # (R, P)
        at = torch.searchsorted(running, targets).clamp(max=p - 1)
        v = sorted_values[c][at]  # (R, 2Q)
        out[:, :, c] = torch.lerp(v[:, :len(q)], v[:, len(q):], weight).T
    out[:, n == 0] = float("nan")
    return out


# Extents are taken between these quantiles, so a few flying pixels at a mask's edge do not set them.
EXTENT_QUANTILES = (0.02, 0.98)


def region_stats(masks: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, stride: int = 1):
    """Per region: the median 3D point (R, 3) and the axis-aligned extent (R, 3) between the 2nd and
    98th percentile of its points (masked_quantiles). NaN rows without valid depth."""
    r = masks.shape[0]
    if r == 0:
        z = torch.zeros((0, 3), device=masks.device)
        return z, z.clone()
    xyz, sel = _grid_points(masks, depth_m, K, stride)
    lo, med, hi = masked_quantiles(xyz, sel, (EXTENT_QUANTILES[0], 0.5, EXTENT_QUANTILES[1]))  # each (R, 3)
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
