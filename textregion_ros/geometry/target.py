"""The grounded target's 3D: its cleaned point cloud, an axis-aligned and an oriented box, and a pose.

Points come from registered depth inside the target's mask, cleaned in three steps on the device:
* the mask is eroded by ``erode_px``: a depth sensor mixes foreground and background across a
  silhouette ("flying pixels"), and a mask edge is uncertain anyway;
* pixels at a depth discontinuity (3x3 depth range above ``edge_jump`` times the depth) go;
* a median/MAD gate on depth drops what is left of the background and stray readings.

The oriented box starts from PCA: each principal axis in turn (and the dominant surface normal,
when a flat face shows) is tried as one box axis, the minimum-area rectangle of the points
projected on the plane across it gives the other two (an angle sweep, then a finer one), and the
smallest-volume box wins. PCA alone tilts on a box showing two sides and its top; a face normal
does not. A box seen from one side shows
at least two adjacent faces, which span its full extent along every axis, so the box is recovered
whole; a round object's box covers only its visible side in depth.

Pose convention (``pose_axes``): z is the box axis closest to image up (-y of the optical frame),
x is the longer of the other two, pointing away from the camera, and y = z x x (right-handed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..masks.base import dilate

MAD_TO_SIGMA = 1.4826


@dataclass
class TargetGeometry:
    points: torch.Tensor  # (N, 3) float32, the cleaned cloud (capped at max_points)
    colors: Optional[torch.Tensor]  # (N, 3) uint8 RGB, or None
    centroid: torch.Tensor  # (3,) median of the points
    aabb_min: torch.Tensor  # (3,)
    aabb_max: torch.Tensor  # (3,)
    obb_centre: torch.Tensor  # (3,)
    obb_axes: torch.Tensor  # (3, 3) columns x, y, z of the box (the pose convention above)
    obb_size: torch.Tensor  # (3,) extents along those columns

    def __len__(self) -> int:
        return self.points.shape[0]


def _grow(mask: torch.Tensor, px: int) -> torch.Tensor:
    """(H, W) bool grown by ``px`` (masks.base.dilate)."""
    return dilate(mask[None].float(), px)[0] > 0


def target_points(mask: torch.Tensor, depth_m: torch.Tensor, K, rgb: Optional[torch.Tensor] = None,
                  erode_px: int = 2, edge_jump: float = 0.03, mad_k: float = 4.0, min_tol: float = 0.02,
                  max_points: int = 20000
                  ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, int, torch.Tensor]:
    """(H, W) bool mask, (H, W) depth in metres (NaN or 0 = hole), K (3, 3) -> (N, 3) points,
    (N, 3) colors, (N, 3) unit surface normals (NaN where a neighbour has no depth), the width in
    pixels of the edge band that cleaning removed (edge_band()), and (N,) which points lie next to
    the silhouette."""
    dev = depth_m.device
    z = depth_m.float()
    valid = torch.isfinite(z) & (z > 0)
    keep = mask.to(dev).bool() & valid
    if erode_px > 0:
        keep &= ~_grow(~mask.to(dev).bool(), erode_px)
    # Depth discontinuities: the 3x3 range of valid depths (holes ignored).
    hi = F.max_pool2d(torch.where(valid, z, -math.inf)[None, None], 3, stride=1, padding=1)[0, 0]
    lo = -F.max_pool2d(torch.where(valid, -z, -math.inf)[None, None], 3, stride=1, padding=1)[0, 0]
    keep &= (hi - lo) <= edge_jump * z
    zs = z[keep]
    if zs.numel():
        med = zs.median()
        mad = (zs - med).abs().median()
        keep &= (z - med).abs() <= torch.clamp(mad_k * MAD_TO_SIGMA * mad, min=min_tol)
    band = edge_band(mask.to(dev).bool(), keep)
    # Points next to the silhouette (within the band plus two pixels): the ends of the object they bound
    # lost the band to cleaning (grow_to_silhouette()).
    m = mask.to(dev).bool()
    near_edge = m & _grow(~m, band + 2)
    vs, us = torch.nonzero(keep, as_tuple=True)
    if max_points and vs.numel() > max_points:  # evenly spaced, so the cloud covers the whole object
        pick = torch.linspace(0, vs.numel() - 1, max_points, device=dev).round().long()
        vs, us = vs[pick], us[pick]
    K = torch.as_tensor(K, dtype=torch.float32, device=dev)
    h, w = z.shape

    def point(v, u):
        zz = z[v.clamp(0, h - 1), u.clamp(0, w - 1)]
        return torch.stack([(u.float() - K[0, 2]) * zz / K[0, 0], (v.float() - K[1, 2]) * zz / K[1, 1], zz], -1)
    pts = point(vs, us)
    # Normals from the organised depth grid: the cross product of central differences.
    normals = F.normalize(torch.linalg.cross(point(vs, us + 1) - point(vs, us - 1),
                                             point(vs + 1, us) - point(vs - 1, us)), dim=-1)
    colors = rgb[vs, us] if rgb is not None else None
    return pts, colors, normals, band, near_edge[vs, us]


def edge_band(mask: torch.Tensor, keep: torch.Tensor, max_px: int = 8) -> int:
    """How many pixels inside the mask's silhouette the clean points start: the first ring (pixels
    at distance k from the boundary, k = 0, 1, ...) of which three quarters were kept (holes aside)."""
    inner = mask
    for k in range(max_px):
        nxt = inner & ~_grow(~inner, 1)
        ring = inner & ~nxt
        n = int(ring.sum())
        if n == 0 or int((ring & keep).sum()) >= 0.75 * n:
            return k
        inner = nxt
    return max_px


def _outline(p2: torch.Tensor, directions: int = 128) -> torch.Tensor:
    """The points extreme along ``directions`` evenly spread directions: hull vertices, and enough
    of them that any rectangle around them is within ~0.03% of the one around all points."""
    a = torch.arange(directions, device=p2.device, dtype=p2.dtype) * (2 * math.pi / directions)
    proj = p2 @ torch.stack([torch.cos(a), torch.sin(a)])  # (N, D)
    return p2[torch.unique(proj.argmax(0))]


def _min_area_rectangle(p2: torch.Tensor) -> Tuple[float, torch.Tensor]:
    """(N, 2) points -> (angle of the minimum-area enclosing rectangle, its (2,) extents)."""
    p2 = _outline(p2)  # only hull points bound a rectangle
    def sweep(angles):
        c, s = torch.cos(angles), torch.sin(angles)
        u = p2[None, :, 0] * c[:, None] + p2[None, :, 1] * s[:, None]
        v = -p2[None, :, 0] * s[:, None] + p2[None, :, 1] * c[:, None]
        ext = torch.stack([u.amax(1) - u.amin(1), v.amax(1) - v.amin(1)], 1)
        i = int(torch.argmin(ext[:, 0] * ext[:, 1]))
        return angles[i], ext[i]
    coarse = torch.deg2rad(torch.arange(0.0, 90.0, 1.0, device=p2.device))
    a, _ = sweep(coarse)
    fine = a + torch.deg2rad(torch.arange(-1.0, 1.0001, 0.05, device=p2.device))
    return sweep(fine)


def dominant_normal(normals: torch.Tensor, samples: int = 512, cone_deg: float = 10.0) -> Optional[torch.Tensor]:
    """The direction most surface normals share (up to sign): a flat face's normal; None when
    fewer than a fifth of the normals agree (a round object)."""
    n = normals[torch.isfinite(normals).all(1)]
    if len(n) < 10:
        return None
    n = n[torch.linspace(0, len(n) - 1, min(samples, len(n)), device=n.device).round().long()].double()
    near = (n @ n.T).abs() >= math.cos(math.radians(cone_deg))
    votes = near.sum(1)
    i = int(torch.argmax(votes))
    if int(votes[i]) < len(n) / 5:
        return None
    group = n[near[i]]
    group = group * torch.sign(group @ n[i])[:, None]  # one hemisphere, then average
    return F.normalize(group.mean(0), dim=0)


def _frame_across(a: torch.Tensor) -> torch.Tensor:
    """(3, 2) orthonormal columns spanning the plane across unit vector ``a``."""
    helper = torch.zeros(3, dtype=a.dtype, device=a.device)
    helper[int(torch.argmin(a.abs()))] = 1.0
    u = F.normalize(torch.linalg.cross(a, helper), dim=0)
    return torch.stack([u, torch.linalg.cross(a, u)], 1)


def oriented_box(points: torch.Tensor, normals: Optional[torch.Tensor] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3) -> centre (3,), axes (3, 3) columns, size (3,): the smallest-volume box over the
    candidate axes (the three principal axes, and the dominant face normal when there is one)."""
    p = points.double()
    mean = p.mean(0)
    x = p - mean
    _, evecs = torch.linalg.eigh(x.T @ x / max(len(p), 1))
    candidates = [evecs[:, k] for k in range(3)]
    if normals is not None:
        face = dominant_normal(normals)
        if face is not None:
            candidates.append(face)
    best = None
    for a in candidates:
        others = _frame_across(a)
        angle, ext2 = _min_area_rectangle(x @ others)
        c, s = torch.cos(angle), torch.sin(angle)
        u = others[:, 0] * c + others[:, 1] * s
        v = -others[:, 0] * s + others[:, 1] * c
        axes = torch.stack([u, v, a], 1)
        proj = x @ axes
        lo, hi = proj.amin(0), proj.amax(0)
        vol = float(torch.prod(hi - lo))
        if best is None or vol < best[0]:
            best = (vol, axes, lo, hi)
    _, axes, lo, hi = best
    centre = mean + axes @ ((lo + hi) / 2)
    axes, size = pose_axes(axes, hi - lo, centre)
    return centre.float(), axes.float(), size.float()


def pose_axes(axes: torch.Tensor, size: torch.Tensor, centre: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reorder and flip box axes (columns) to the module's pose convention; sizes follow."""
    up = torch.tensor([0.0, -1.0, 0.0], dtype=axes.dtype, device=axes.device)
    iz = int(torch.argmax((axes.T @ up).abs()))
    rest = [j for j in range(3) if j != iz]
    ix, iy = sorted(rest, key=lambda j: -float(size[j]))
    zc = axes[:, iz] * torch.sign(axes[:, iz] @ up + 1e-12)
    xc = axes[:, ix] * torch.sign(axes[:, ix] @ centre + 1e-12)
    yc = torch.linalg.cross(zc, xc)
    return torch.stack([xc, yc, zc], 1), torch.stack([size[ix], size[iy], size[iz]])


def grow_to_silhouette(points: torch.Tensor, at_edge: torch.Tensor, centre: torch.Tensor, axes: torch.Tensor,
                       size: torch.Tensor, band_px: float, focal: float, end_tol: float = 0.005
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Give the box back the edge band that cleaning removed, at the ends it removed it from.

    An end of a box axis (its last ``end_tol`` metres of points) bounded mostly by points next to the
    silhouette lost ``band_px`` pixels there; at the object's depth that is ``band_px * z / f`` in the
    image, and along the axis that much divided by how far the axis lies across the line of sight.
    Ends at a visible edge (the near corner of a box seen corner-on) keep theirs. Returns the new
    centre and size.
    """
    if band_px <= 0 or len(points) == 0:
        return centre, size
    p = points.double() - centre.double()
    a = axes.double()
    proj = p @ a  # (N, 3)
    view = F.normalize(centre.double(), dim=0)
    across = torch.sqrt((1.0 - (a.T @ view) ** 2).clamp(min=0.0)).clamp(min=0.3)
    step = band_px * float(centre[2]) / focal / across  # (3,) metres along each axis
    lo, hi = proj.amin(0), proj.amax(0)
    new_lo, new_hi = lo.clone(), hi.clone()
    for i in range(3):
        for end, sign in ((hi[i], 1.0), (lo[i], -1.0)):
            sel = (proj[:, i] - end).abs() <= end_tol
            if int(sel.sum()) and float(at_edge[sel].double().mean()) > 0.5:
                if sign > 0:
                    new_hi[i] = hi[i] + step[i]
                else:
                    new_lo[i] = lo[i] - step[i]
    shift = (new_lo + new_hi) / 2 - (lo + hi) / 2
    return (centre.double() + a @ shift).to(centre.dtype), (new_hi - new_lo).to(size.dtype)


def target_geometry(mask: torch.Tensor, depth_m: torch.Tensor, K, rgb: Optional[torch.Tensor] = None,
                    max_points: int = 20000, erode_px: int = 2, min_points: int = 20) -> Optional[TargetGeometry]:
    """Everything above for one mask; None when fewer than ``min_points`` clean points remain."""
    # Work inside the mask's box (plus room for the filters): the object, not the frame, sets the cost.
    ys, xs = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    if len(ys) == 0:
        return None
    pad = erode_px + 12
    h, w = mask.shape
    y0, y1 = max(int(ys[0]) - pad, 0), min(int(ys[-1]) + 1 + pad, h)
    x0, x1 = max(int(xs[0]) - pad, 0), min(int(xs[-1]) + 1 + pad, w)
    K = torch.as_tensor(K, dtype=torch.float64).clone()
    K[0, 2] -= x0
    K[1, 2] -= y0
    pts, colors, normals, band, at_edge = target_points(
        mask[y0:y1, x0:x1], depth_m[y0:y1, x0:x1], K, rgb[y0:y1, x0:x1] if rgb is not None else None,
        erode_px=erode_px, max_points=max_points)
    if len(pts) < min_points:
        return None
    centre, axes, size = oriented_box(pts, normals)
    Kt = torch.as_tensor(K, dtype=torch.float64)
    centre, size = grow_to_silhouette(pts, at_edge, centre, axes, size, band, float(Kt[0, 0] + Kt[1, 1]) / 2)
    return TargetGeometry(points=pts, colors=colors, centroid=pts.median(0).values, aabb_min=pts.amin(0),
                          aabb_max=pts.amax(0), obb_centre=centre, obb_axes=axes, obb_size=size)
