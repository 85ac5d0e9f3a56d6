"""A tabletop for the object memory, seen the way SAM2 and a RealSense see it.

A table with two mugs 15 cm apart (one class), a book 3 cm thick with an orange resting on it off its
centre, a 4.5 cm lime, and a shelf; a 640x480 camera (fx = 615) on 60 known poses 0.7-4 m from what it looks
at. Each view is ray-cast (memory_scene.render), then given a RealSense's faults: depth noise
sigma = 0.0015 z^2 m, 3% holes, and flying pixels (depth between the two sides) at depth edges. Its
detections are the true instance masks with SAM2's faults: in 10% of views two touching masks merged into
one detection with one of their tokens, in 15% one object's mask split in two, in 20% a spurious 300-pixel
blob on the floor with a random token. A second sweep of 30 views follows after one mug moved 0.5 m and the
lime was taken away. Everything the memory is checked against (true centres, boxes, visibility) comes from
the scene, not from the memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from scipy import ndimage

from memory_scene import Render, Thing, backproject, look_at, render
from textregion_ros.memory import Detection, Observation

WIDTH, HEIGHT, FX = 640, 480, 615.0
DIM = 32
MIN_PIXELS = 40  # SAM2's smallest masks
TABLE_TOP = 0.75


def tabletop() -> List[Thing]:
    def box(name, x, y, z0, sx, sy, sz, yaw, colour):
        return Thing(name, "box", np.array([x, y, z0 + sz / 2]), np.array([sx, sy, sz]), yaw, colour)

    def ball(name, x, y, z0, r, colour):
        return Thing(name, "sphere", np.array([x, y, z0 + r]), np.full(3, 2 * r), 0.0, colour)

    return [box("table", 0.0, 0.0, 0.0, 1.2, 0.8, TABLE_TOP, 0, (150, 100, 60)),
            box("mug", -0.075, 0.15, TABLE_TOP, 0.08, 0.08, 0.10, 15, (220, 30, 30)),
            box("mug", 0.075, 0.15, TABLE_TOP, 0.08, 0.08, 0.10, -10, (200, 40, 50)),
            box("book", 0.25, -0.15, TABLE_TOP, 0.24, 0.17, 0.03, 20, (40, 60, 200)),
            ball("orange", 0.31, -0.12, TABLE_TOP + 0.03, 0.04, (250, 140, 20)),
            ball("lime", -0.35, -0.20, TABLE_TOP, 0.0225, (120, 220, 40)),
            box("shelf", 0.0, 1.6, 0.0, 0.9, 0.35, 1.4, 0, (90, 90, 90))]


def moved(things: List[Thing]) -> List[Thing]:
    """The second sweep's scene: the second mug 0.5 m along -y, the lime taken away."""
    out = [t for t in things if t.name != "lime"]
    mug = out[2]
    out[2] = Thing(mug.name, mug.kind, mug.centre + np.array([0.0, -0.5, 0.0]), mug.size, mug.yaw, mug.colour)
    return out


def trajectory(n: int = 60, seed: int = 0) -> List:
    """Poses around the table, 0.9-3.4 m out, every fourth looking at the shelf: 0.7-4 m to what is looked at."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(n):
        a = math.radians(-120 + 300.0 * i / n)
        r = 2.15 + 1.25 * math.sin(2.7 * i / n * math.pi)
        eye = np.array([r * math.cos(a), r * math.sin(a), 1.15 + 0.3 * math.sin(i / 5.0)])
        shelf = np.array([0.0, 1.6, 0.9])
        target = shelf if i % 4 == 3 and np.linalg.norm(eye - shelf) < 3.8 else np.array([0.0, 0.0, 0.8])
        target = target + rng.normal(0, 0.05, 3)
        while _inside_furniture(eye) or np.linalg.norm(eye[:2] - target[:2]) < 0.7:  # step out, away
            eye[:2] *= 1.1
        poses.append(look_at(eye, target))
    return poses


def _inside_furniture(eye: np.ndarray, clearance: float = 0.3) -> bool:
    """The camera inside (or within ``clearance`` of) the table's or the shelf's footprint."""
    for th in tabletop():
        if th.name in ("table", "shelf") and (np.abs(eye[:2] - th.centre[:2]) < th.size[:2] / 2 + clearance).all():
            return True
    return False


def class_tokens(things: List[Thing], seed: int = 7) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = sorted({t.name for t in things})
    q, _ = np.linalg.qr(rng.normal(size=(DIM, len(names))))
    return {n: q[:, i] for i, n in enumerate(names)}


def realsense(r: Render, rng) -> np.ndarray:
    """Depth with a RealSense's faults: noise sigma 0.0015 z^2, 3% holes, flying pixels at depth edges."""
    z = r.depth_m.astype(np.float64).copy()
    z = z + rng.standard_normal(z.shape) * 0.0015 * np.nan_to_num(z) ** 2
    for axis in (0, 1):  # a pixel across a depth edge returns a depth in between, half the time
        a, b = z, np.roll(z, -1, axis)
        edge = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) > 0.05) & (rng.random(z.shape) < 0.5)
        z = np.where(edge, a + (b - a) * rng.random(z.shape), z)
    z[rng.random(z.shape) < 0.03] = np.nan
    return z.astype(np.float32)


@dataclass
class View:
    pose: object
    K: np.ndarray
    depth: np.ndarray  # noisy, NaN = hole
    detections: List[Detection]
    visible: List[int]  # thing indices with at least MIN_PIXELS pixels
    faults: List[str]


def _box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    v, u = np.nonzero(mask)
    return int(u.min()), int(v.min()), int(u.max()) + 1, int(v.max()) + 1


def _detection(r: Render, depth: np.ndarray, mask: np.ndarray, token, label, rng) -> Detection:
    noisy = Render(depth, r.instance, r.rgb, r.K, r.pose)
    t = token + rng.normal(0, 0.03, DIM)
    return Detection((t / np.linalg.norm(t)).astype(np.float32), backproject(noisy, mask), label, 0.9,
                     box=_box(mask), pixels=int(mask.sum()))


def view(things: List[Thing], pose, tokens, rng, clean: Render = None) -> View:
    r = clean or render(things, pose, WIDTH, HEIGHT, f=FX)
    depth = realsense(r, rng)
    masks = {i: r.instance == i + 1 for i in range(len(things))}
    visible = [i for i, m in masks.items() if m.sum() >= MIN_PIXELS]
    faults, groups = [], [[i] for i in visible]
    if rng.random() < 0.10:  # two touching masks merged, with one of their tokens
        pairs = [(a, b) for a in visible for b in visible if a < b
                 and (ndimage.binary_dilation(masks[a], iterations=2) & masks[b]).any()]
        if pairs:
            a, b = pairs[rng.integers(len(pairs))]
            groups = [g for g in groups if g[0] not in (a, b)] + [[a, b] if rng.random() < 0.5 else [b, a]]
            faults.append(f"merged {things[a].name}+{things[b].name}")
    dets = []
    split = rng.random() < 0.15
    for g in groups:
        mask = np.logical_or.reduce([masks[i] for i in g])
        th = things[g[0]]
        if split and len(g) == 1 and mask.sum() >= 200:  # one object's mask split in two
            split = False
            u0 = int(np.nonzero(mask)[1].mean())
            left = mask.copy()
            left[:, u0:] = False
            dets += [_detection(r, depth, m, tokens[th.name], th.name, rng) for m in (left, mask & ~left)]
            faults.append(f"split {th.name}")
            continue
        dets.append(_detection(r, depth, mask, tokens[th.name], th.name, rng))
    if rng.random() < 0.20:  # a spurious blob on the floor, with a random token
        v, u = np.nonzero((r.instance == 0) & np.isfinite(depth))
        if len(v):
            k = rng.integers(len(v))
            blob = np.zeros_like(masks[0])
            blob[v[k]:v[k] + 15, u[k]:u[k] + 20] = True
            blob &= r.instance == 0
            dets.append(_detection(r, depth, blob, rng.normal(size=DIM), "blob", rng))
            faults.append("blob")
    order = rng.permutation(len(dets))
    return View(pose, r.K, depth, [dets[i] for i in order], visible, faults)


def observation(v: View, k: int) -> Observation:
    return Observation(k * 100_000_000, "camera", v.pose, v.K, v.depth, v.detections)
