"""Metrics as mmseg's IoUMetric (which the official evaluation runs) and the referring tallies.

Semantic segmentation accumulates one confusion matrix over the dataset: pixels whose ground truth is
the ignore index are left out; a class's IoU is its summed intersection over its summed union, and a
class whose union is empty over the whole dataset has no IoU (NaN) and is left out of the mean, as
mmseg does. aAcc is correct pixels over labelled pixels; mAcc the mean of per-class recall over the
classes that occur in the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch


def confusion(gt: torch.Tensor, pred: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(H, W) ground truth and prediction -> (C, C) int64 counts, rows = ground truth, cols = prediction.

    Ground-truth values outside [0, C) other than the ignore index are an error (a wrong class file or
    layout), not something to drop quietly.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"label map {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in size")
    gt, pred = gt.reshape(-1).long(), pred.reshape(-1).long().to(gt.device)
    valid = gt != ignore_index
    gt, pred = gt[valid], pred[valid]
    if gt.numel() and (int(gt.min()) < 0 or int(gt.max()) >= num_classes):
        raise ValueError(f"ground truth has class {int(gt.max())} but the class file names {num_classes} "
                         f"classes (ignore index {ignore_index})")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError("prediction outside the class range")
    return torch.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


@dataclass
class SegScores:
    miou: float
    aacc: float
    macc: float
    iou: np.ndarray  # (C,) NaN where the class's union is empty
    acc: np.ndarray  # (C,) NaN where the class has no ground-truth pixel
    gt_pixels: np.ndarray  # (C,)


def seg_scores(conf: np.ndarray) -> SegScores:
    conf = np.asarray(conf, dtype=np.float64)
    inter = np.diag(conf)
    gt_area, pred_area = conf.sum(1), conf.sum(0)
    union = gt_area + pred_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        acc = np.where(gt_area > 0, inter / gt_area, np.nan)
    total = gt_area.sum()
    return SegScores(miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                     aacc=float(inter.sum() / total) if total else float("nan"),
                     macc=float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
                     iou=iou, acc=acc, gt_pixels=gt_area)


def mask_overlap(a: np.ndarray, b: np.ndarray) -> Tuple[int, int]:
    """-> (intersection, union) pixel counts of two boolean masks of one size."""
    return int(np.logical_and(a, b).sum()), int(np.logical_or(a, b).sum())


def box_intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """Overlap area of two xywh boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xywh boxes (the official referring evaluation's Box arithmetic)."""
    inter = box_intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class ReferringTally:
    """Per-expression outcomes -> accuracy at IoU 0.5, mean IoU, cumulative IoU and the abstain rate."""
    ious: List[float] = field(default_factory=list)  # mask IoU where the truth is a mask, else box IoU
    box_hits: List[bool] = field(default_factory=list)  # the official rule: box IoU > 0.5
    abstained: List[bool] = field(default_factory=list)
    inter: int = 0
    union: int = 0

    def add(self, iou: float, box_hit: bool, abstained: bool, inter: int, union: int) -> None:
        self.ious.append(float(iou))
        self.box_hits.append(bool(box_hit))
        self.abstained.append(bool(abstained))
        self.inter += int(inter)
        self.union += int(union)

    def scores(self) -> Dict[str, Optional[float]]:
        n = len(self.ious)
        if n == 0:
            return {"n": 0, "acc50": None, "box_acc50": None, "miou": None, "ciou": None, "abstain_rate": None}
        ious = np.asarray(self.ious)
        return {"n": n, "acc50": float((ious > 0.5).mean()), "box_acc50": float(np.mean(self.box_hits)),
                "miou": float(ious.mean()), "ciou": float(self.inter / self.union) if self.union else None,
                "abstain_rate": float(np.mean(self.abstained))}
