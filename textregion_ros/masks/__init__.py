"""Mask sources behind one interface (base.MaskSource): SAM2 everything, superpixels, given."""
from __future__ import annotations

from .base import MaskSet, MaskSource, boxes_from_masks, dilate
from .given import GivenMasks, given_masks
from .superpixels import Superpixels

__all__ = ["GivenMasks", "MaskSet", "MaskSource", "Superpixels", "boxes_from_masks", "create_mask_source", "dilate",
           "given_masks"]


def create_mask_source(config, device) -> MaskSource:
    """Mask source named by ``config.mask_source`` (a PipelineConfig)."""
    if config.mask_source == "superpixels":
        return Superpixels(n_segments=config.superpixel_segments)
    if config.mask_source == "given":
        return GivenMasks()
    from .sam2_build import build_sam2_model
    from .sam2_everything import Sam2Everything

    model = build_sam2_model(config.sam2_model, config.sam2_weights, config.random_weights, device)
    return Sam2Everything(
        model, points_per_side=config.points_per_side, point_batch=config.point_batch,
        pred_iou_thresh=config.pred_iou_thresh, stability_score_thresh=config.stability_score_thresh,
        stability_score_offset=config.stability_score_offset, box_nms_thresh=config.box_nms_thresh,
        min_mask_area=config.min_mask_area, input_size=config.sam2_input_size, multimask=config.multimask,
        fuse_masks=config.fuse_masks, fuse_thresh=config.fuse_thresh, max_masks=config.max_masks,
        force_masks=config.force_masks,
        autocast_dtype=config.torch_dtype() if config.torch_device().type == "cuda" else None)
