"""Dataset layouts and loaders. Paths come from the user; nothing is downloaded.

Semantic segmentation, ``--layout``:
* ``voc``:    ROOT/JPEGImages/ID.jpg, ROOT/SegmentationClass/ID.png (palette indices, 255 = border),
              instances ROOT/SegmentationObject/ID.png, ids from ROOT/ImageSets/Segmentation/val.txt;
* ``ade20k``: ROOT/images/validation/ID.jpg, ROOT/annotations/validation/ID.png; label 0 is "other"
              and becomes the ignore index, the rest shift down by one (mmseg ``reduce_zero_label``);
* ``folder``: --images DIR, --labels DIR (ID.png beside ID.<any image extension>), optional
              --instances DIR; every label PNG is a sample unless --split names the ids.
A label PNG holds class indices (a palette PNG's indices, not its colours).

Referring expressions: JSONL, one expression per line::

    {"image": "COCO_train2014_000000000001.jpg", "expression": "the red mug on the left",
     "box": [x, y, w, h],  "mask": "masks/17.png" | "polygons": [[x0, y0, x1, y1, ...], ...],
     "instances": "inst/1.png", "detections": [[x, y, w, h], ...]}

``box`` or a mask (``mask`` PNG, non-zero = object, or COCO ``polygons``) is required; ``instances``
(an instance-id PNG, 0 = none) serves ``--masks given``; ``detections`` are the boxes the official
protocol snaps predictions to. Relative paths are taken from --images (images) and the JSONL's folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("voc", "ade20k", "folder")


@dataclass(frozen=True)
class SegSample:
    id: str
    image: str
    label: str
    instances: Optional[str] = None


@dataclass
class SegDataset:
    samples: List[SegSample]
    reduce_zero_label: bool = False
    ignore_index: int = 255

    def __len__(self) -> int:
        return len(self.samples)

    def load_label(self, s: SegSample) -> np.ndarray:
        label = read_index_png(s.label).astype(np.int64)
        if self.reduce_zero_label:  # mmseg: 0 -> ignore, k -> k - 1
            label = np.where(label == 0, self.ignore_index, label - 1)
            label[label == self.ignore_index - 1] = self.ignore_index
        return label

    def load_instances(self, s: SegSample) -> Optional[np.ndarray]:
        return read_index_png(s.instances).astype(np.int64) if s.instances else None


def read_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_index_png(path: str) -> np.ndarray:
    """A label or instance PNG's values: palette indices for 'P' images, the grey value for 'L'/'I'."""
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            raise ValueError(f"{path}: an RGB label image; labels must be class indices (palette or greyscale)")
        return np.asarray(im)


def find_image(folder: str, stem: str) -> str:
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no image for {stem!r} in {folder}")


def read_split(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def seg_dataset(layout: str, root: Optional[str] = None, images: Optional[str] = None,
                labels: Optional[str] = None, instances: Optional[str] = None, split: Optional[str] = None,
                ignore_index: int = 255, limit: int = 0) -> SegDataset:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    reduce_zero = False
    if instances and not os.path.isdir(instances):  # asked for by name: a typo must not pass silently
        raise FileNotFoundError(f"instances folder {instances} does not exist")
    if layout == "voc":
        if not root:
            raise ValueError("--layout voc needs --root (the VOC2012 folder)")
        images, labels = os.path.join(root, "JPEGImages"), os.path.join(root, "SegmentationClass")
        instances = instances or os.path.join(root, "SegmentationObject")
        split = split or os.path.join(root, "ImageSets", "Segmentation", "val.txt")
    elif layout == "ade20k":
        if not root:
            raise ValueError("--layout ade20k needs --root (the ADEChallengeData2016 folder)")
        images, labels = os.path.join(root, "images", "validation"), os.path.join(root, "annotations", "validation")
        reduce_zero = True
    elif not (images and labels):
        raise ValueError("--layout folder needs --images and --labels")
    for what, path in (("images", images), ("labels", labels)):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{what} folder {path} does not exist")
    if instances and not os.path.isdir(instances):  # the layout's default folder is optional
        instances = None
    ids = read_split(split) if split else sorted(os.path.splitext(n)[0] for n in os.listdir(labels)
                                                  if n.lower().endswith(".png"))
    if limit:
        ids = ids[:limit]
    samples = []
    for i in ids:
        inst = os.path.join(instances, i + ".png") if instances else None
        samples.append(SegSample(i, find_image(images, i), os.path.join(labels, i + ".png"),
                                 inst if inst and os.path.isfile(inst) else None))
    return SegDataset(samples, reduce_zero, ignore_index)


@dataclass
class RefSample:
    id: str
    image: str
    expression: str
    box: Optional[List[float]] = None  # xywh
    mask: Optional[str] = None
    polygons: Optional[List[List[float]]] = None
    instances: Optional[str] = None
    detections: List[List[float]] = field(default_factory=list)

    def gt_mask(self, hw) -> Optional[np.ndarray]:
        if self.mask:
            m = read_index_png(self.mask)
            if m.ndim == 3:
                m = m[..., 0]
            if m.shape[:2] != tuple(hw):
                raise ValueError(f"{self.mask}: mask {m.shape[:2]} does not match its image {tuple(hw)}")
            return m > 0
        if self.polygons:
            m = np.zeros(hw, np.uint8)
            for poly in self.polygons:
                pts = np.asarray(poly, np.float64).reshape(-1, 2)
                cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
            return m > 0
        return None


def read_refs(path: str, images: Optional[str] = None, limit: int = 0) -> List[RefSample]:
    base = os.path.dirname(os.path.abspath(path))
    out: List[RefSample] = []

    def rel(p: Optional[str], root: str) -> Optional[str]:
        return p if p is None or os.path.isabs(p) else os.path.join(root, p)

    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                image, expr = d["image"], d["expression"]
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{n}: not a referring record ({exc})") from None
            if not isinstance(expr, str) or not expr.strip():
                raise ValueError(f"{path}:{n}: empty expression")
            if d.get("box") is None and d.get("mask") is None and not d.get("polygons"):
                raise ValueError(f"{path}:{n}: needs a box, a mask or polygons")
            out.append(RefSample(str(d.get("id", n)), rel(image, images or base), expr.strip(), d.get("box"),
                                 rel(d.get("mask"), base), d.get("polygons"), rel(d.get("instances"), base),
                                 list(d.get("detections") or [])))
            if limit and len(out) >= limit:
                break
    return out


def group_by_image(samples: Sequence[RefSample]) -> Iterator[List[RefSample]]:
    """Consecutive records of one image (with the same instance map) run on one processed frame."""
    batch: List[RefSample] = []
    for s in samples:
        if batch and (s.image != batch[0].image or s.instances != batch[0].instances):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch
