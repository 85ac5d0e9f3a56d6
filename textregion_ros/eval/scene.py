"""A generated camera scene with real structure: shapes, edges, texture, and matching depth.

Used by the demo's built-in camera, the benchmarks and the tests, so nothing
depends on a downloaded image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 metres, NaN holes
    object_mask: np.ndarray  # (H, W) bool, the foreground box ("red mug")
    object_depth_m: float
    K: np.ndarray  # (3, 3) pinhole intrinsics


def make_scene(width: int = 640, height: int = 480, seed: int = 0, shift: int = 0,
               hole_fraction: float = 0.05) -> Scene:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Wall: vertical gradient with wood-like stripes; floor: checkerboard.
    img = np.zeros((height, width, 3), np.float32)
    img[...] = (150 + 40 * np.sin(xx / 23.0)[..., None] * np.array([0.3, 0.2, 0.1])) * (0.7 + 0.3 * yy / height)[..., None]
    floor = yy > height * 0.62
    checker = ((xx // 40 + yy // 40) % 2).astype(np.float32)
    img[floor] = (np.array([90, 80, 70]) + 60 * checker[floor][:, None])
    img += rng.normal(0, 6, img.shape)  # sensor texture
    img = np.clip(img, 0, 255).astype(np.uint8)
    # Objects: a red "mug" (box + handle), a blue ball, a green book; they slide with ``shift``.
    ox = int(width * 0.18) + shift
    box = (ox, int(height * 0.45), ox + int(width * 0.16), int(height * 0.75))
    cv2.rectangle(img, box[:2], box[2:], (200, 30, 30), -1)
    cv2.circle(img, (box[2] + 12, (box[1] + box[3]) // 2), 18, (170, 20, 20), 6)
    cv2.circle(img, (int(width * 0.62) - shift // 2, int(height * 0.6)), int(height * 0.1), (30, 60, 210), -1)
    cv2.rectangle(img, (int(width * 0.75), int(height * 0.2)), (int(width * 0.92), int(height * 0.38)), (40, 160, 60), -1)
    cv2.putText(img, "TR", (int(width * 0.78), int(height * 0.33)), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (240, 240, 240), 3)
    object_mask = np.zeros((height, width), bool)
    object_mask[box[1]:box[3], box[0]:box[2]] = True

    depth = np.full((height, width), 3.0, np.float32)
    depth[floor] = (1.5 + 3.0 * (height - yy[floor]) / height).astype(np.float32)
    object_depth = 1.2
    depth[object_mask] = object_depth
    depth[rng.random(depth.shape) < hole_fraction] = np.nan
    fx = fy = 0.8 * width
    K = np.array([[fx, 0, width / 2.0], [0, fy, height / 2.0], [0, 0, 1]], np.float64)
    return Scene(img, depth, object_mask, object_depth, K)


def backproject(u: float, v: float, z: float, K: np.ndarray) -> Tuple[float, float, float]:
    return ((u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z)


@dataclass
class MovingFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool, the visible part of each object in view (occlusion applied)
    object_ids: np.ndarray  # (N,) which object each mask is


def moving_objects(frames: int, width: int = 320, height: int = 240, objects: int = 5, max_speed: float = 20.0,
                   seed: int = 0, leave: Tuple[int, int] = (-1, -1)) -> list:
    """Coloured discs and boxes moving at constant velocity (bouncing off the borders), drawn in a
    fixed depth order so nearer ones occlude farther ones. Object 0 leaves the view for the frames
    in ``leave`` = [first, last) and returns where it would have been."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(22, 40, objects)
    pos = np.stack([rng.uniform(size, width - size), rng.uniform(size, height - size)], 1)
    angle = rng.uniform(0, 2 * np.pi, objects)
    speed = rng.uniform(0.4, 1.0, objects) * max_speed
    vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
    colors = rng.integers(40, 255, (objects, 3))
    out = []
    yy, xx = np.mgrid[0:height, 0:width]
    for f in range(frames):
        rgb = np.full((height, width, 3), 128, np.uint8)
        rgb[...] = (rgb + rng.normal(0, 4, rgb.shape)).clip(0, 255).astype(np.uint8)
        owner = np.full((height, width), -1, np.int64)
        for k in range(objects):  # later objects are nearer
            if leave[0] <= f < leave[1] and k == 0:
                continue
            cx, cy = pos[k]
            # Only the object's bounding window is tested (the same per-pixel arithmetic as over the whole
            # image, a fraction of the pixels): generating sequences was most of the tracking tests' time.
            win = (slice(max(0, int(np.floor(cy - size[k]))), min(height, int(np.ceil(cy + size[k])) + 1)),
                   slice(max(0, int(np.floor(cx - size[k]))), min(width, int(np.ceil(cx + size[k])) + 1)))
            x, y = xx[win], yy[win]
            shape = (x - cx) ** 2 + (y - cy) ** 2 <= size[k] ** 2 if k % 2 == 0 else \
                (abs(x - cx) <= size[k]) & (abs(y - cy) <= size[k] * 0.7)
            owner[win][shape] = k
            rgb[win][shape] = colors[k]
        area = np.bincount(owner.ravel() + 1, minlength=objects + 1)[1:]
        ids = np.flatnonzero(area >= 30).astype(np.int64)
        out.append(MovingFrame(rgb, owner[None] == ids[:, None, None], ids))
        pos += vel
        for d, lim in ((0, width), (1, height)):  # bounce
            low, high = pos[:, d] < size, pos[:, d] > lim - size
            vel[low | high, d] *= -1
            pos[:, d] = pos[:, d].clip(size, lim - size)
    return out
