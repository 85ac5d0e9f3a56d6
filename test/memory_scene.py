"""A room for the object memory: six objects on a floor (map frame, z up), ray-cast from camera poses
on a circle around them. Each render gives depth, the true instance map (the given masks) and the
camera pose, so every test knows where each object really is."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from rgbd_shapes import _box_hit, _sphere_hit, camera
from textregion_ros.geometry.transform import RigidTransform


@dataclass
class Thing:
    name: str
    kind: str  # "box" | "sphere"
    centre: np.ndarray  # map frame
    size: np.ndarray  # box: extents along its axes; sphere: (2r, 2r, 2r)
    yaw: float = 0.0  # degrees about map z
    colour: Tuple[int, int, int] = (200, 40, 40)

    def axes(self) -> np.ndarray:
        a = math.radians(self.yaw)
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def room() -> List[Thing]:
    def box(name, x, y, sx, sy, sz, yaw, colour):
        return Thing(name, "box", np.array([x, y, sz / 2]), np.array([sx, sy, sz]), yaw, colour)

    def ball(name, x, y, r, colour):
        return Thing(name, "sphere", np.array([x, y, r]), np.full(3, 2 * r), 0.0, colour)

    return [box("red mug", 0.45, 0.10, 0.10, 0.10, 0.12, 20, (220, 30, 30)),
            box("blue box", -0.40, 0.35, 0.30, 0.20, 0.18, -35, (30, 30, 220)),
            ball("green ball", 0.05, -0.45, 0.08, (30, 200, 30)),
            box("yellow book", -0.25, -0.30, 0.24, 0.17, 0.04, 60, (230, 220, 30)),
            ball("orange", 0.10, 0.50, 0.05, (250, 140, 20)),
            box("black shoe", 0.55, -0.40, 0.28, 0.11, 0.10, 100, (30, 30, 30))]


def look_at(eye, target) -> RigidTransform:
    """Camera optical frame (x right, y down, z forward) -> map, for a camera at ``eye`` looking at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    f = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(f, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    return RigidTransform(np.stack([right, down, f], 1), eye)


def circle(n: int = 48, radius: float = 1.6, height: float = 0.9, start_deg: float = 0.0) -> List[RigidTransform]:
    out = []
    for i in range(n):
        a = math.radians(start_deg + 360.0 * i / n)
        out.append(look_at((radius * math.cos(a), radius * math.sin(a), height), (0.0, 0.0, 0.1)))
    return out


@dataclass
class Render:
    depth_m: np.ndarray  # (H, W) float32, NaN = no return
    instance: np.ndarray  # (H, W) int: 0 floor or nothing, i + 1 = things[i]
    rgb: np.ndarray
    K: np.ndarray
    pose: RigidTransform


def render(things: List[Thing], pose: RigidTransform, width=320, height=240, noise=0.0, holes=0.0,
           seed=0, f: Optional[float] = None) -> Render:
    K, rays = camera(width, height, f=f or 0.82 * width)
    R, eye = pose.R, pose.t
    hits = []
    for th in things:
        c = R.T @ (th.centre - eye)
        hit = np.full(rays.shape[:2], np.inf)
        v0, v1, u0, u1 = _footprint(th, R, eye, K, width, height)
        sub = rays[v0:v1, u0:u1]  # only the rays that can reach it: the same hits, a fraction of the work
        if sub.size:
            if th.kind == "box":
                hit[v0:v1, u0:u1] = _box_hit(sub, c, (R.T @ th.axes()).T, th.size / 2)
            else:
                hit[v0:v1, u0:u1] = _sphere_hit(sub, c, th.size[0] / 2)
        hits.append(hit)
    with np.errstate(divide="ignore", invalid="ignore"):
        rz = rays @ R[2]  # the map z of each ray direction
        floor = np.where(rz < -1e-9, -eye[2] / rz, np.inf)
    t = np.stack([floor] + hits)
    inst = t.argmin(0)
    depth = t.min(0)
    rng = np.random.default_rng(seed)
    depth = np.where(np.isfinite(depth), depth, np.nan)
    if noise:
        depth = depth * (1.0 + noise * rng.standard_normal(depth.shape))
    if holes:
        depth[rng.random(depth.shape) < holes] = np.nan
    rgb = np.full((height, width, 3), 128, np.uint8)
    for i, th in enumerate(things):
        rgb[inst == i + 1] = th.colour
    return Render(depth.astype(np.float32), np.where(np.isfinite(t.min(0)), inst, 0), rgb, K, pose)


def _footprint(th: Thing, R, eye, K, width: int, height: int):
    """(v0, v1, u0, u1): the image rectangle holding the projection of the thing's box (its corners'
    projections bound it when every corner is in front of the camera; otherwise the whole image)."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * th.size / 2
    cam = (th.centre + corners @ th.axes().T - eye) @ R
    if (cam[:, 2] <= 0.01).any():
        return 0, height, 0, width
    u, v = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2], K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    u0, u1 = int(np.clip(np.floor(u.min()) - 1, 0, width)), int(np.clip(np.ceil(u.max()) + 2, 0, width))
    v0, v1 = int(np.clip(np.floor(v.min()) - 1, 0, height)), int(np.clip(np.ceil(v.max()) + 2, 0, height))
    return v0, v1, u0, u1


def backproject(r: Render, mask: np.ndarray, stride: int = 2) -> np.ndarray:
    """Map-frame points of the mask's pixels with valid depth."""
    v, u = np.nonzero(mask[::stride, ::stride])
    v, u = v * stride, u * stride
    z = r.depth_m[v, u].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    v, u, z = v[ok], u[ok], z[ok]
    cam = np.stack([(u - r.K[0, 2]) * z / r.K[0, 0], (v - r.K[1, 2]) * z / r.K[1, 1], z], -1)
    return r.pose.points(cam)


def move(things: List[Thing], name: str, to_xy) -> List[Thing]:
    out = []
    for th in things:
        if th.name == name:
            th = Thing(th.name, th.kind, np.array([to_xy[0], to_xy[1], th.centre[2]]), th.size, th.yaw, th.colour)
        out.append(th)
    return out


def visible_ids(r: Render, min_pixels: int = 40) -> List[int]:
    ids, counts = np.unique(r.instance, return_counts=True)
    return [int(i) for i, c in zip(ids, counts) if i > 0 and c >= min_pixels]


def thing_at(things, name) -> Optional[Thing]:
    return next((t for t in things if t.name == name), None)


FLOOR_COLOUR = (128, 128, 128)


class ColourMasks:
    """A mask source standing in for SAM2 on the room: one mask per colour present (the true instance
    masks, since every object has its own colour); the floor's is labelled background downstream."""
    name = "room_colours"
    knobs: dict = {}

    def __init__(self, things, min_pixels: int = 40):
        self.colours = [FLOOR_COLOUR] + [t.colour for t in things]
        self.min_pixels = min_pixels

    def generate(self, image01):
        import torch
        from textregion_ros.masks.given import given_masks

        rgb = (image01 * 255.0).round().permute(1, 2, 0)  # (H, W, 3)
        masks = [(rgb == torch.tensor(c, dtype=rgb.dtype, device=rgb.device)).all(-1) for c in self.colours]
        masks = [m for m in masks if int(m.sum()) >= self.min_pixels]
        if not masks:
            masks = [torch.ones(rgb.shape[:2], dtype=torch.bool, device=rgb.device)]
        return given_masks(torch.stack(masks))


class FaultyColourMasks(ColourMasks):
    """ColourMasks with SAM2's faults, drawn from a seeded generator per frame: in 10% of frames two masks
    within 10 pixels of each other merged into one, in 15% one mask split in two down its middle column, in 20% a spurious 300-pixel
    blob (on whatever lies there). The token of a merged mask is what the encoder makes of it: its majority."""
    name = "room_colours_faulty"

    def __init__(self, things, seed: int = 0, min_pixels: int = 40):
        super().__init__(things, min_pixels)
        self.rng = np.random.default_rng(seed)
        self.faults: list = []

    def generate(self, image01):
        import torch
        from textregion_ros.masks.given import given_masks

        masks = list(super().generate(image01).masks.bool())
        rng = self.rng
        if rng.random() < 0.10 and len(masks) > 2:
            pairs = [(a, b) for a in range(1, len(masks)) for b in range(a + 1, len(masks))
                     if (_dilate(masks[a]) & masks[b]).any()]
            if pairs:
                a, b = pairs[rng.integers(len(pairs))]
                masks = [m for i, m in enumerate(masks) if i not in (a, b)] + [masks[a] | masks[b]]
                self.faults.append("merged")
        if rng.random() < 0.15:
            big = [i for i in range(1, len(masks)) if int(masks[i].sum()) >= 200]
            if big:
                i = big[rng.integers(len(big))]
                cols = torch.nonzero(masks[i])[:, 1].float().mean().long()
                left = masks[i].clone()
                left[:, cols:] = False
                masks = masks[:i] + masks[i + 1:] + [left, masks[i] & ~left]
                self.faults.append("split")
        if rng.random() < 0.20:
            h, w = masks[0].shape
            v, u = int(rng.integers(0, h - 15)), int(rng.integers(0, w - 20))
            blob = torch.zeros_like(masks[0])
            blob[v:v + 15, u:u + 20] = True
            masks.append(blob)
            self.faults.append("blob")
        return given_masks(torch.stack(masks))


def _dilate(mask):
    import torch.nn.functional as F

    return F.max_pool2d(mask[None, None].float(), 21, 1, 10)[0, 0] > 0  # 10 px: adjacent in the image


def room_encoder(things):
    """The planted encoder (eval_data) with the room's classes and colours: a patch's feature is the
    one-hot room colour nearest its mean, a region's token the text embedding of its majority colour."""
    import torch
    import torch.nn.functional as F
    from eval_data import PlantedEncoder
    from textregion_ros.encoders.base import ValueFeatures

    palette = torch.tensor([FLOOR_COLOUR] + [t.colour for t in things], dtype=torch.float32)

    class RoomEncoder(PlantedEncoder):
        def __init__(self):
            super().__init__()
            self.names = self.token_names = ["floor"] + [t.name for t in things]

        def encode_values(self, pixels):
            colour = F.avg_pool2d(pixels.float() * 255.0, self.patch_size)
            b, _, g, _ = colour.shape
            flat = colour.permute(0, 2, 3, 1).reshape(b, g * g, 3)
            onehot = F.one_hot(torch.cdist(flat, palette).argmin(-1), len(palette)).float()
            return ValueFeatures(torch.cat([onehot.new_zeros(b, 1, len(palette)), onehot], 1), 1, g)

    return RoomEncoder()
