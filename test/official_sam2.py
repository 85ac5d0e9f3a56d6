"""TextRegion's CustomAutomaticMaskGenerator rules, written from the official code, over stock sam2.

The oracle for our Sam2Everything: stock ``SAM2ImagePredictor`` gives the raw low-resolution
logits for every grid point; the filters, their order and the fusion follow
avaxiao/TextRegion sam2/custom_automatic_mask_generator.py (split by size, half precision,
predicted IoU, stability, boxes on the low-resolution masks, NMS, minimum size on the
low-resolution grid, clamp to [0, 3], upsample to the frame, whole > part > sub-part by IoU,
greedy soft-containment fusion). Nothing here imports textregion_ros.
"""
from __future__ import annotations

import numpy as np
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from sam2.utils.transforms import SAM2Transforms
from torchvision.ops.boxes import batched_nms


def box_iou(boxes1, boxes2):
    x1A, y1A, x2A, y2A = boxes1[:, 0:1], boxes1[:, 1:2], boxes1[:, 2:3], boxes1[:, 3:4]
    x1B, y1B, x2B, y2B = boxes2[:, 0], boxes2[:, 1], boxes2[:, 2], boxes2[:, 3]
    inter_w = (torch.minimum(x2A, x2B) - torch.maximum(x1A, x1B)).clamp(min=0)
    inter_h = (torch.minimum(y2A, y2B) - torch.maximum(y1A, y1B)).clamp(min=0)
    inter_area = inter_w * inter_h
    areaA = (x2A - x1A).clamp(min=0) * (y2A - y1A).clamp(min=0)
    areaB = (x2B - x1B).clamp(min=0) * (y2B - y1B).clamp(min=0)
    return inter_area / (areaA + areaB - inter_area + 1e-8)


def mask_containment(maskA, maskB):
    areaA, areaB = maskA.sum(), maskB.sum()
    intersection = torch.minimum(maskA, maskB).sum()
    smaller_area = torch.minimum(areaA, areaB)
    if smaller_area < 1e-8:
        return torch.tensor(0.0)
    return intersection / smaller_area


def fuse_overlap_masks(anns, threshold=0.8):
    """The official greedy fusion -> (merged masks, member indices of each group)."""
    masks = torch.stack([a["segmentations"] for a in anns]).float()
    bboxes = torch.tensor([a["bbox_xyxy"] for a in anns], dtype=torch.float32)
    bbox_iou_matrix = box_iou(bboxes, bboxes)
    recording = torch.ones(len(masks), dtype=torch.bool)
    out, groups = [], []
    for i in range(len(masks)):
        if not recording[i]:
            continue
        recording[i] = False
        group = [i]
        candidates = (bbox_iou_matrix[i] > 0.2) & recording
        for j in candidates.nonzero().flatten().tolist():
            if mask_containment(masks[i], masks[j]) > threshold:
                group.append(j)
        recording[torch.tensor(group)] = False
        out.append(masks[group].amax(dim=0))
        groups.append(group)
    return out, groups


@torch.no_grad()
def official_generate(model, rgb: np.ndarray, points_per_side: int, pred_iou_thresh: float,
                      stability_score_thresh: float, box_nms_thresh: float = 0.9, min_size: int = 100,
                      fuse_threshold: float = 0.8, fuse: bool = True):
    """-> list of fused masks at frame resolution (clamped logits in [0, 3])."""
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(rgb)
    h, w = rgb.shape[:2]
    points = torch.as_tensor(build_point_grid(points_per_side) * np.array([[w, h]]), dtype=torch.float32)
    in_points = predictor._transforms.transform_coords(points, normalize=True, orig_hw=(h, w))
    in_labels = torch.ones(in_points.shape[0], dtype=torch.int)
    _, iou_preds, low_res_masks = predictor._predict(in_points[:, None, :], in_labels[:, None],
                                                     multimask_output=True, return_logits=True)
    return official_postprocess(low_res_masks, iou_preds, (h, w), pred_iou_thresh, stability_score_thresh,
                                box_nms_thresh, min_size, fuse_threshold, fuse)


@torch.no_grad()
def official_postprocess(low_res_masks, iou_preds, frame_hw, pred_iou_thresh: float, stability_score_thresh: float,
                         box_nms_thresh: float = 0.9, min_size: int = 100, fuse_threshold: float = 0.8,
                         fuse: bool = True):
    """(N, 3, h, w) multimask logits and (N, 3) IoU predictions -> fused frame-resolution masks."""
    h, w = frame_hw
    low_res_masks = low_res_masks.half()
    masks = torch.cat([low_res_masks[:, 2], low_res_masks[:, 1], low_res_masks[:, 0]])
    ious = torch.cat([iou_preds[:, 2], iou_preds[:, 1], iou_preds[:, 0]])
    n = low_res_masks.shape[0]
    sizes = torch.tensor([2] * n + [1] * n + [0] * n)
    keep = ious > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(ious, dtype=torch.bool)
    masks, ious, sizes = masks[keep], ious[keep], sizes[keep]
    stability = calculate_stability_score(masks, 0.0, 1.0)
    keep = stability >= stability_score_thresh if stability_score_thresh > 0 else torch.ones_like(keep[keep])
    masks, ious, sizes = masks[keep], ious[keep], sizes[keep]
    boxes = batched_mask_to_box(masks > 0)
    keep = batched_nms(boxes.float(), ious, torch.zeros_like(boxes[:, 0]), iou_threshold=box_nms_thresh)
    masks, ious, sizes, boxes = masks[keep], ious[keep], sizes[keep], boxes[keep]
    mask_size = (masks > 0).sum(dim=(1, 2))
    masks = torch.clamp(masks, min=0, max=3)
    masks = SAM2Transforms(1024, mask_threshold=0.0).postprocess_masks(masks.unsqueeze(1), (h, w))[:, 0].half()
    anns = [{"segmentations": masks[i], "bbox_xyxy": boxes[i].tolist(), "predicted_iou": float(ious[i]),
             "size": int(sizes[i])} for i in range(len(masks)) if mask_size[i] > min_size]
    ordered = []
    for size in (2, 1, 0):
        ordered += sorted([a for a in anns if a["size"] == size], key=lambda a: a["predicted_iou"], reverse=True)
    if not fuse or not ordered:
        return [a["segmentations"].float() for a in ordered]
    merged, _ = fuse_overlap_masks(ordered, fuse_threshold)
    return merged
