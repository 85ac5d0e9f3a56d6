"""RGB-D frames of shapes with known geometry, ray-cast through a pinhole camera (optical frame:
x right, y down, z forward). Each scene has a floor-less far wall, one object, and the sensor's
faults: depth holes, flying pixels bleeding across the object's silhouette, and millimetre
quantisation for 16UC1."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WALL_Z = 2.5


@dataclass
class ShapeScene:
    depth_m: np.ndarray  # (H, W) float32, NaN holes (ideal depth with sensor faults)
    rgb: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool, the object's true silhouette
    K: np.ndarray
    centre: np.ndarray  # (3,) the object's centre
    axes: np.ndarray  # (3, 3) rows: the object's axes (box) in the camera frame
    size: np.ndarray  # (3,) extents along ``axes``
    surface_distance: callable  # (N, 3) points -> (N,) distance to the true surface


def camera(width=640, height=480, f=525.0):
    K = np.array([[f, 0, width / 2 - 0.5], [0, f, height / 2 - 0.5], [0, 0, 1.0]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    return K, rays


def rot_y(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_x(deg):
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _box_hit(rays, centre, R, half):
    """Slab method in the box frame; returns t (depth along the ray, since ray z = 1) or inf."""
    o = -(R @ centre)  # camera origin in box coordinates (R rows = box axes)
    d = rays @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    tmin = np.nanmax(np.minimum(t1, t2), -1)
    tmax = np.nanmin(np.maximum(t1, t2), -1)
    hit = (tmax >= tmin) & (tmax > 0)
    return np.where(hit, tmin, np.inf)


def _sphere_hit(rays, centre, r):
    a = (rays * rays).sum(-1)
    b = -2 * (rays @ centre)
    c = centre @ centre - r * r
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where(disc >= 0, t, np.inf)


def _cylinder_hit(rays, centre, r, h):
    """Upright cylinder (axis = camera y), with caps."""
    dx, dz = rays[..., 0], rays[..., 2]
    a = dx * dx + dz * dz
    b = -2 * (dx * centre[0] + dz * centre[2])
    c = centre[0] ** 2 + centre[2] ** 2 - r * r
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    y = rays[..., 1] * t
    side = (disc >= 0) & (np.abs(y - centre[1]) <= h / 2)
    out = np.where(side, t, np.inf)
    for cap in (centre[1] - h / 2, centre[1] + h / 2):
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = cap / rays[..., 1]
        p = rays * tc[..., None]
        inside = ((p[..., 0] - centre[0]) ** 2 + (p[..., 2] - centre[2]) ** 2 <= r * r) & (tc > 0)
        out = np.minimum(out, np.where(inside, tc, np.inf))
    return out


def _finish(t, K, seed, holes, bleed, centre, axes, size, dist):
    rng = np.random.default_rng(seed)
    mask = np.isfinite(t)
    depth = np.where(mask, t, WALL_Z).astype(np.float64)
    # Flying pixels: a sensor mixes foreground and background across a silhouette edge, so a band
    # of pixels just inside the mask takes depths between the two.
    edge = mask & ~_erode(mask, bleed)
    mix = rng.uniform(0.2, 0.9, depth.shape)
    depth = np.where(edge, depth * (1 - mix) + WALL_Z * mix, depth)
    depth[rng.random(depth.shape) < holes] = np.nan
    rgb = np.full(depth.shape + (3,), 90, np.uint8)
    rgb[mask] = (200, 40, 40)
    return ShapeScene(depth.astype(np.float32), rgb, mask, K, np.asarray(centre, float), axes, np.asarray(size, float),
                      dist)


def _erode(mask, px):
    out = mask.copy()
    for _ in range(px):
        m = out.copy()
        m[1:] &= out[:-1]
        m[:-1] &= out[1:]
        m[:, 1:] &= out[:, :-1]
        m[:, :-1] &= out[:, 1:]
        out = m
    return out


def box_scene(centre=(0.05, 0.08, 1.2), size=(0.24, 0.12, 0.16), yaw=35.0, pitch=-25.0, holes=0.05, bleed=2,
              seed=0):
    """A box turned by ``yaw`` about the vertical, seen from above at ``pitch`` (two sides and the top visible)."""
    K, rays = camera()
    R = (rot_x(pitch) @ rot_y(yaw)).T  # rows: box axes in the camera frame
    centre = np.asarray(centre, float)
    half = np.asarray(size, float) / 2
    t = _box_hit(rays, centre, R, half)

    def dist(p):
        q = np.abs((p - centre) @ R.T) - half  # box-frame distance to the surface (outside > 0)
        outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
        inside = np.minimum(q.max(-1), 0)
        return np.abs(outside + inside)
    return _finish(t, K, seed, holes, bleed, centre, R, size, dist)


def sphere_scene(centre=(-0.05, 0.0, 1.0), r=0.09, holes=0.05, bleed=2, seed=1):
    K, rays = camera()
    centre = np.asarray(centre, float)
    t = _sphere_hit(rays, centre, r)
    return _finish(t, K, seed, holes, bleed, centre, np.eye(3), [2 * r] * 3,
                   lambda p: np.abs(np.linalg.norm(p - centre, axis=-1) - r))


def cylinder_scene(centre=(0.0, 0.05, 1.1), r=0.05, h=0.2, holes=0.05, bleed=2, seed=2):
    K, rays = camera()
    centre = np.asarray(centre, float)
    t = _cylinder_hit(rays, centre, r, h)

    def dist(p):
        radial = np.hypot(p[:, 0] - centre[0], p[:, 2] - centre[2]) - r
        axial = np.abs(p[:, 1] - centre[1]) - h / 2
        outside = np.hypot(np.maximum(radial, 0), np.maximum(axial, 0))
        return np.abs(outside + np.minimum(np.maximum(radial, axial), 0))
    return _finish(t, K, seed, holes, bleed, centre, np.eye(3), [2 * r, h, 2 * r], dist)


def to_16uc1(depth_m):
    """Millimetres as a 16UC1 sensor sends them (0 = no reading)."""
    return np.where(np.isfinite(depth_m), np.round(depth_m * 1000), 0).astype(np.uint16)
