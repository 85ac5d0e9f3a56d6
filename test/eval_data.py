"""A generated semantic-segmentation and referring dataset in the VOC layout, with known answers,
and a planted encoder whose region tokens are the text embedding of each region's true class.

The planted encoder stands in for pretrained weights, which this machine cannot have: it reads a
region's class from its pixels' colour (the generator paints each class one colour), so the
evaluation's bookkeeping (masks -> tokens -> labels -> label map -> metric) is proven exactly,
with no model quality in the way. Its text side is a seeded random vector per string.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from textregion_ros.encoders.base import ImageTextEncoder, ValueFeatures
from textregion_ros.encoders.text import TEMPLATE_SETS

BACKGROUND = ("background", "wall", "floor")  # one class with synonyms, as VOC21's class file has
CLASSES = ["red box", "green disc", "blue box", "yellow disc", "magenta box"]
ABSENT = "unicorn"  # in the class file, never in an image: its IoU is undefined and left out of the mean
PALETTE = np.array([[128, 128, 128], [220, 30, 30], [30, 200, 30], [30, 30, 220], [230, 220, 30], [210, 40, 200]])
IGNORE = 255


def class_file_lines() -> List[str]:
    return ["; ".join(BACKGROUND)] + CLASSES + [ABSENT]


def write_dataset(root: str, n: int = 24, seed: int = 0, sizes=None) -> Dict[str, object]:
    """VOC layout under ``root``; returns paths and the per-class labelled pixel counts."""
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation", "refmasks"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    ids, refs = [], []
    counts = np.zeros(len(class_file_lines()), np.int64)
    pixels = ignored = 0
    pal = np.zeros(768, np.uint8)
    pal[:3 * len(PALETTE)] = PALETTE.reshape(-1)
    for k in range(n):
        h, w = sizes[k] if sizes else (int(rng.integers(160, 241)), int(rng.integers(200, 321)))
        label, inst, rgb = draw(rng, h, w)
        image_id = f"2026_{k:04d}"
        ids.append(image_id)
        Image.fromarray(rgb).save(os.path.join(root, "JPEGImages", image_id + ".png"))  # lossless colours
        lab = Image.fromarray(label.astype(np.uint8), mode="P")
        lab.putpalette(pal.tolist())
        lab.save(os.path.join(root, "SegmentationClass", image_id + ".png"))
        Image.fromarray(inst.astype(np.uint8)).save(os.path.join(root, "SegmentationObject", image_id + ".png"))
        valid = label != IGNORE
        pixels, ignored = pixels + label.size, ignored + int((~valid).sum())
        counts += np.bincount(label[valid], minlength=len(counts))
        for c in range(1, len(CLASSES) + 1):
            mask_path = os.path.join(root, "refmasks", f"{image_id}_{c}.png")
            Image.fromarray(((inst == c) * 255).astype(np.uint8)).save(mask_path)
            refs.append({"id": f"{image_id}-{c}", "image": os.path.join("JPEGImages", image_id + ".png"),
                         "expression": CLASSES[c - 1], "mask": os.path.relpath(mask_path, root),
                         "instances": os.path.join("SegmentationObject", image_id + ".png")})
    with open(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(class_file_lines()) + "\n")
    with open(os.path.join(root, "refs.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in refs)
    return {"classes": os.path.join(root, "classes.txt"), "refs": os.path.join(root, "refs.jsonl"),
            "counts": counts, "ids": ids, "n_refs": len(refs), "pixels": pixels, "ignored": ignored}


def draw(rng, h: int, w: int):
    """Every object class once, nearer ones drawn later (occlusion), a 2-px ignore band around each
    object as VOC has, and each object keeps a visible area of at least 600 labelled pixels."""
    while True:
        owner = np.zeros((h, w), np.int64)
        yy, xx = np.mgrid[0:h, 0:w]
        for c in rng.permutation(len(CLASSES)) + 1:
            r = rng.uniform(24, 42)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            shape = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) if "disc" in CLASSES[c - 1] else \
                ((abs(xx - cx) <= r) & (abs(yy - cy) <= 0.75 * r))
            owner[shape] = c
        edges = np.zeros((h, w), bool)
        for c in range(1, len(CLASSES) + 1):
            m = (owner == c).astype(np.uint8)
            edges |= cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        label, inst = owner.copy(), owner.copy()
        label[edges], inst[edges] = IGNORE, IGNORE
        if all(((label == c).sum() >= 600) for c in range(1, len(CLASSES) + 1)):
            break
    rgb = PALETTE[owner].astype(np.float64) + rng.normal(0, 4, (h, w, 3))
    return label, inst, np.clip(rgb, 0, 255).astype(np.uint8)


def text_vector(text: str, dim: int = 128) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


class PlantedEncoder(ImageTextEncoder):
    """Patch features: the one-hot palette class of each patch's mean colour. A region's token: the text
    embedding (template ensemble) of the class that holds most of its mask weight, or of ``swap[class]``."""
    family = "planted"
    mask_pooling = "sum"
    default_mean = (0.0, 0.0, 0.0)
    default_std = (1.0, 1.0, 1.0)

    def __init__(self, templates: str = "short", swap: Optional[Dict[str, str]] = None):
        super().__init__(torch.nn.Linear(1, 1), "planted")
        self.names = [BACKGROUND[0]] + CLASSES
        self.templates = TEMPLATE_SETS[templates]
        swap = swap or {}
        self.token_names = [swap.get(n, n) for n in self.names]
        self.views: List[int] = []  # views per encoder call

    image_size = property(lambda self: 448)
    patch_size = property(lambda self: 16)

    def encode_text(self, texts):
        return F.normalize(torch.stack([text_vector(t) for t in texts]), dim=-1)

    def encode_values(self, pixels: torch.Tensor) -> ValueFeatures:
        self.views.append(int(pixels.shape[0]))
        colour = F.avg_pool2d(pixels.float() * 255.0, self.patch_size)  # (B, 3, g, g)
        b, _, g, _ = colour.shape
        flat = colour.permute(0, 2, 3, 1).reshape(b, g * g, 3)
        dist = torch.cdist(flat, torch.tensor(PALETTE, dtype=torch.float32))
        onehot = F.one_hot(dist.argmin(-1), len(PALETTE)).float()
        return ValueFeatures(torch.cat([onehot.new_zeros(b, 1, len(PALETTE)), onehot], 1), 1, g)

    def pool(self, values, weights, residual=None, use_mlp=False):
        votes = weights.float() @ values.float()  # (R, K) mask weight per palette class
        names = [self.token_names[int(i)] for i in votes.argmax(-1)]
        return torch.stack([F.normalize(self.encode_text([t.format(n) for t in self.templates]).mean(0), dim=-1)
                            for n in names])
