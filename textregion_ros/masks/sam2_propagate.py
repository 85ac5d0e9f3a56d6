"""One object's mask carried from frame to frame by SAM2's own memory attention, as a stream.

``SAM2VideoPredictor.propagate_in_video`` needs the whole video up front. A camera is a stream,
so this drives the same SAM2 modules frame by frame, with the same steps for one object:
* ``start(image, mask)`` is ``add_new_mask`` on a new conditioning frame followed by
  ``propagate_in_video_preflight``: the mask resized to the model's input with antialiasing and
  re-binarised, ``track_step`` without the memory encoder, sam2's hole filling, then the memory
  encoder on the upsampled output with ``is_mask_from_pts=True``;
* ``step(image)`` is one iteration of ``propagate_in_video``: ``track_step`` on the memory so far,
  memory features stored in bfloat16 as the predictor stores them, sam2's hole filling.
The memory keeps only the frames SAM2 can still attend to (its ``num_maskmem`` memories and its
``max_obj_ptrs_in_encoder`` object pointers), so a long stream holds constant memory.

The model must be configured as sam2's video predictor (``build_sam2_video_predictor``): it
binarises a given mask for the memory encoder and fills small holes. ``video_model_like`` builds
one that shares the parameters of an image model already loaded.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

# propagate_in_video's num_frames only bounds reverse tracking; a stream has no end.
STREAM_FRAMES = 2 ** 31 - 1
IMG_MEAN = (0.485, 0.456, 0.406)  # sam2's load_video_frames defaults
IMG_STD = (0.229, 0.224, 0.225)


def video_model_like(image_model: torch.nn.Module, size: str, device, image_size: int = 1024) -> torch.nn.Module:
    """sam2's video predictor for ``size`` at ``image_size`` input, built by sam2's builder (the
    size is its ``model.image_size`` override), sharing ``image_model``'s parameters (no second
    copy of the weights)."""
    from sam2.build_sam import build_sam2_video_predictor

    from .sam2_build import SAM2_MODELS, sam2_size

    config = SAM2_MODELS[sam2_size(size)][0]
    video = build_sam2_video_predictor(config, None, device=str(device),
                                       hydra_overrides_extra=[f"++model.image_size={int(image_size)}"])
    state = {k.replace("_orig_mod.", ""): v for k, v in image_model.state_dict().items()}
    video.load_state_dict(state, strict=True, assign=True)
    return video.eval()


class Sam2Propagator:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.memory: Dict[str, Dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        self.frame = -1
        self.keep = max(model.num_maskmem * getattr(model, "memory_temporal_stride_for_eval", 1),
                        model.max_obj_ptrs_in_encoder)

    @property
    def started(self) -> bool:
        return bool(self.memory["cond_frame_outputs"])

    def reset(self) -> None:
        self.memory = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        self.frame = -1

    def preprocess(self, image01: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB in [0, 1] -> (3, S, S) normalised at the model's input size, as
        load_video_frames prepares a frame (a square resize, ImageNet mean and std)."""
        s = self.model.image_size
        x = F.interpolate(image01[None].float(), size=(s, s), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        mean = torch.tensor(IMG_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(IMG_STD, device=x.device)[:, None, None]
        return (x - mean) / std

    def _features(self, image: torch.Tensor):
        backbone = self.model.forward_image(image[None].to(self.model.device).float())
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone)
        return feats, pos, sizes

    def _compact(self, out: dict, pred_masks: torch.Tensor) -> dict:
        mem = out["maskmem_features"]
        return {"maskmem_features": mem.to(torch.bfloat16) if mem is not None else None,
                "maskmem_pos_enc": out["maskmem_pos_enc"], "pred_masks": pred_masks, "obj_ptr": out["obj_ptr"],
                "object_score_logits": out["object_score_logits"]}

    def _fill_holes(self, masks: torch.Tensor) -> torch.Tensor:
        area = getattr(self.model, "fill_hole_area", 0)
        if area > 0:
            from sam2.utils.misc import fill_holes_in_mask_scores
            masks = fill_holes_in_mask_scores(masks, area)
        return masks

    @torch.inference_mode()
    def start(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A new object: ``image`` from preprocess(), ``mask`` (H, W) bool at any resolution.
        Returns the (1, 1, h, w) low-resolution mask logits of this frame."""
        self.reset()
        self.frame = 0
        m = self.model
        s = m.image_size
        mask = mask.to(m.device).float()[None, None]
        if mask.shape[-2:] != (s, s):
            mask = (F.interpolate(mask, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                    >= 0.5).float()
        feats, pos, sizes = self._features(image)
        out = m.track_step(frame_idx=0, is_init_cond_frame=True, current_vision_feats=feats,
                           current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None, mask_inputs=mask,
                           output_dict=self.memory, num_frames=STREAM_FRAMES, run_mem_encoder=False)
        pred = self._fill_holes(out["pred_masks"])
        high = F.interpolate(pred, size=(s, s), mode="bilinear", align_corners=False)
        mem, mem_pos = m._encode_new_memory(current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=high,
                                            object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
        out["maskmem_features"], out["maskmem_pos_enc"] = mem, mem_pos
        self.memory["cond_frame_outputs"][0] = self._compact(out, pred)
        return pred

    @torch.inference_mode()
    def step(self, image: torch.Tensor) -> Optional[torch.Tensor]:
        """The next frame (from preprocess()): (1, 1, h, w) mask logits, or None before start()."""
        if not self.started:
            return None
        self.frame += 1
        feats, pos, sizes = self._features(image)
        out = self.model.track_step(frame_idx=self.frame, is_init_cond_frame=False, current_vision_feats=feats,
                                    current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                                    mask_inputs=None, output_dict=self.memory, num_frames=STREAM_FRAMES,
                                    run_mem_encoder=True)
        pred = self._fill_holes(out["pred_masks"])
        non_cond = self.memory["non_cond_frame_outputs"]
        non_cond[self.frame] = self._compact(out, pred)
        for old in [f for f in non_cond if f <= self.frame - self.keep]:
            del non_cond[old]
        return pred

    def object_present(self, logits: torch.Tensor) -> bool:
        return bool((logits > 0).any())
