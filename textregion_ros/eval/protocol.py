"""The official evaluation rules (avaxiao/TextRegion model_semantic.py, eval_referring.py), on our Pipeline.

Semantic label map (``postprocess_result``): each region's logit per class name (its cosine, or for a
sigmoid model ``exp(t) * cos + b``) is spread through its soft mask (SAM2's logits clamped to [0, 3],
resized to the label map and clamped to [0, 1]) and summed over regions. Pixels no region covers take,
for CLIP, the dense patch logits of its last block run with correlative self-attention (SCLIP's CSA,
``get_CLIP_logits``); for SigLIP2 and PE they keep zero logits, as there. The result is softmaxed at
``region_logit_scale`` over the class names. A class with several names ("sky; wall; tree" for VOC's
background) takes the max of its names' probabilities. The prediction is the arg-max class, set to
class 0 where the winning probability is below ``prob_thd`` (the official configs: VOC21 0.4, Context60
0.35, COCO-Object 0.5, others 0). Images are first resized by the dataset's rule (mmseg
``Resize(keep_ratio=True)``); with ``tiles=auto`` each is then tiled as ``model_semantic`` tiles the image
it is given (``official_tiles``), not rescaled again as the node's ``auto`` does (TextRegionSegmenter's rule).

Where ours differs, by design or by omission (the README repeats this):
* the official code takes the max over the names of the *first* class only (the only class with several
  names in its class files); we take it within every class, which is the same on those files;
* SAM2's masks reach the label map's size in one bilinear resize of the low-resolution logits (sam2's
  own postprocessing resizes twice: to its input size, then to the image);
* the CSA fill reuses the region pass's last-block inputs (``Pipeline.process(keep_views=True)``) and runs only
  the CSA block on them, on frames with uncovered pixels only;

Referring (``eval_referring.py``): images are resized to a 2016-px long side (its ``--scale 2016 2016``);
the expression's region is the arg-max cosine over regions (no abstain), scored at the image's size;
its mask (> 0.5) keeps its largest connected component, whose box is snapped to the detection box it
overlaps most when detections are given; it is a hit when that box's IoU with the truth is > 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..pipeline import image_to_tensor
from ..results import FrameResult
from ..tokens import dense_embedding_map
from .metrics import box_intersection, box_iou, mask_overlap

# The official configs' mmseg Resize scales and probability thresholds, by dataset.
OFFICIAL_RESIZE = {"voc21": (1008, 672), "voc20": (2016, 672), "context60": (2016, 672),
                   "context59": (2016, 672), "coco_object": (2016, 672), "coco_stuff": (1334, 896),
                   "ade20k": (2016, 672), "cityscapes": (2688, 1344)}
OFFICIAL_PROB_THD = {"voc21": 0.4, "context60": 0.35, "coco_object": 0.5}


@dataclass(frozen=True)
class ClassNames:
    """A class file: one class per line, its names separated by ';' (the official ``get_cls_idx``)."""
    classes: Tuple[Tuple[str, ...], ...]

    @classmethod
    def read(cls, path: str) -> "ClassNames":
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\n") for ln in f]
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            raise ValueError(f"{path}: no class names")
        classes = []
        for i, line in enumerate(lines):
            names = tuple(n.strip() for n in line.split(";") if n.strip())
            if not names:
                raise ValueError(f"{path}:{i + 1}: a class line without a name")
            classes.append(names)
        return cls(tuple(classes))

    @property
    def names(self) -> List[str]:
        """One display name per class (its first name)."""
        return [c[0] for c in self.classes]

    @property
    def flat(self) -> List[str]:
        """Every name, in file order: the vocabulary the pipeline embeds (one label per name)."""
        return [n for c in self.classes for n in c]

    @property
    def name_class(self) -> torch.Tensor:
        """(S,) class index of each flat name."""
        return torch.tensor([i for i, c in enumerate(self.classes) for _ in c], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.classes)


def rescale_size(height: int, width: int, scale: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """mmcv ``rescale_size((w, h), scale)`` with keep_ratio: one factor so the long side is at most
    max(scale) and the short side at most min(scale), sizes rounded half up. None keeps the size."""
    if scale is None:
        return height, width
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def official_tiles(height: int, width: int, crop: int) -> str:
    """model_semantic.predict's tiling of the image it is given (no rescale inside the model: the
    dataset's Resize did it): max(h // crop, 1) x max(w // crop, 1) crops."""
    return f"{max(height // crop, 1)}x{max(width // crop, 1)}"


def rescale_image(rgb: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """mmcv ``imrescale``: cv2 bilinear."""
    if tuple(rgb.shape[:2]) == tuple(size_hw):
        return rgb
    return cv2.resize(rgb, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def region_name_logits(result: FrameResult, sigmoid: Optional[Tuple[float, float]]) -> torch.Tensor:
    """(R, S) logit of every region for every class name (the pipeline's vocabulary is one label per name)."""
    cos = result.classes.cosines.float()
    return cos if sigmoid is None else cos * sigmoid[0] + sigmoid[1]


def semantic_prediction(result: FrameResult, classes: ClassNames, out_hw: Tuple[int, int],
                        sigmoid: Optional[Tuple[float, float]] = None, prob_thd: float = 0.0,
                        null_fill: Optional[Callable[[], Optional[torch.Tensor]]] = None,
                        stats: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> (H, W) class index and its probability at ``out_hw`` (the module docstring's rule).

    ``null_fill`` returns (S, gh, gw) per-name logits on the patch grid (or None) for the pixels no region
    covers; it is called only when there are such pixels. ``stats`` receives their count ("uncovered").
    """
    num_names = len(classes.flat)
    dev = result.tokens.device
    if len(result) == 0:
        seg = torch.zeros((num_names, *out_hw), device=dev)
        covered = torch.zeros(out_hw, dtype=torch.bool, device=dev)
    else:
        logits = region_name_logits(result, sigmoid)  # (R, S)
        if logits.shape[1] != num_names:
            raise ValueError("the pipeline's vocabulary is not this class file's names")
        # The official masks are SAM2's clamped logits resized to the image, then clamped to [0, 1].
        src = result.masks.pooling_source().float()
        masks = F.interpolate(src[None], size=out_hw, mode="bilinear", align_corners=False)[0].clamp_(0.0, 1.0)
        seg = torch.einsum("rs,rhw->shw", logits, masks)
        covered = masks.sum(0) > 0
    if stats is not None:
        stats["uncovered"] = int((~covered).sum())
    if null_fill is not None and not bool(covered.all()):
        dense = null_fill()
        if dense is not None:
            dense = F.interpolate(dense[None].float(), size=out_hw, mode="bilinear", align_corners=False)[0]
            seg = torch.where(covered, seg, dense)
    probs = torch.softmax(seg * result.region_logit_scale, dim=0)
    if num_names != len(classes):  # a class with several names: the max of their probabilities
        group = classes.name_class.to(dev)
        per_class = torch.full((len(classes), *out_hw), -1.0, device=dev)
        probs = per_class.scatter_reduce(0, group[:, None, None].expand_as(probs), probs, "amax")
    conf, pred = probs.max(dim=0)
    if num_names != len(classes) or prob_thd != 0:
        pred[conf < prob_thd] = 0
    return pred, conf


def dense_name_logits(pipeline, frame: np.ndarray, sigmoid: Optional[Tuple[float, float]] = None,
                      views=None) -> Optional[torch.Tensor]:
    """(S, gh, gw) logits of every patch for every name of the pipeline's vocabulary, from the encoder's
    dense head (CLIP's CSA block; None for other families): the official fill for uncovered pixels.
    ``views``: a result's (``Pipeline.process(keep_views=True)``), so the encoder runs once per image."""
    cfg = pipeline.config
    with torch.inference_mode():
        fmap = dense_embedding_map(pipeline.encoder, image_to_tensor(frame, pipeline.device), cfg.tiles,
                                   cfg.use_global_view, views)
        if fmap is None:
            return None
        cos = fmap.values @ pipeline.vocab.label_emb.embeddings.float().T  # (N, S): one label per name
        logits = cos if sigmoid is None else cos * sigmoid[0] + sigmoid[1]
        return logits.T.reshape(-1, *fmap.grid_hw)


def segments_as_masks(label: np.ndarray, instances: Optional[np.ndarray], ignore_index: int,
                      size_hw: Tuple[int, int]) -> Tuple[torch.Tensor, np.ndarray]:
    """Ground-truth regions for ``--masks given``: one mask per (class, instance) over the labelled pixels,
    at ``size_hw`` (nearest-neighbour, as the frame was resized). -> ((R, h, w) bool, (R,) class)."""
    key = label.astype(np.int64) * 65536 + (instances.astype(np.int64) if instances is not None else 0)
    key[label == ignore_index] = -1
    if tuple(key.shape) != tuple(size_hw):
        key = cv2.resize(key.astype(np.float64), (size_hw[1], size_hw[0]), interpolation=cv2.INTER_NEAREST
                         ).astype(np.int64)
    ids = np.unique(key)
    ids = ids[ids >= 0]
    keys = torch.from_numpy(key)
    masks = keys[None] == torch.from_numpy(ids)[:, None, None]
    return masks, ids // 65536


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The official ``clean_mask(keep_largest=True)``."""
    if not mask.any():
        return mask
    _, comp = cv2.connectedComponents(mask.astype(np.uint8))
    return comp == 1 + int(np.argmax(np.bincount(comp.ravel())[1:]))


def mask_box(mask: np.ndarray) -> Optional[Tuple[float, float, float, float]]:
    """The official ``mask_to_bbox`` as xywh: (x_min, y_min, x_max - x_min, y_max - y_min), or None."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())


def snap_to_detections(box: Tuple[float, ...], detections: Sequence[Sequence[float]]) -> Tuple[float, ...]:
    """The detection box the predicted box overlaps most (the official rule), or the box itself."""
    best, chosen = 0.0, None
    for det in detections:
        iou = box_iou(det, box)
        if iou > best:
            best, chosen = iou, tuple(float(v) for v in det)
    return chosen if chosen is not None else box


def referring_outcome(pred_mask: np.ndarray, gt_mask: Optional[np.ndarray], gt_box: Optional[Sequence[float]],
                      detections: Sequence[Sequence[float]] = ()) -> Tuple[float, bool, int, int]:
    """One expression -> (IoU, box hit, intersection, union). The IoU is the mask IoU when the truth has a
    mask, else the box IoU; the box hit is the official rule (module docstring)."""
    if gt_box is None:
        gt_box = mask_box(gt_mask) if gt_mask is not None else None
    box = mask_box(largest_component(pred_mask))
    hit = False
    if box is not None and gt_box is not None:
        box = snap_to_detections(box, detections)
        hit = box_iou(box, gt_box) > 0.5
    if gt_mask is not None:
        inter, union = mask_overlap(pred_mask, gt_mask)
        return (inter / union if union else 0.0), hit, inter, union
    if box is None or gt_box is None:
        return 0.0, hit, 0, int(round(gt_box[2] * gt_box[3])) if gt_box is not None else 0
    inter = box_intersection(box, gt_box)
    union = box[2] * box[3] + gt_box[2] * gt_box[3] - inter
    return (inter / union if union > 0 else 0.0), hit, int(round(inter)), int(round(union))

