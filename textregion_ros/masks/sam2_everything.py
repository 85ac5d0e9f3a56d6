"""SAM2 "segment everything" that stays on the GPU and filters before it upsamples.

Drives the sam2 package's own modules (image_encoder via forward_image,
sam_prompt_encoder, sam_mask_decoder) without patching them:

1. encode the image once at ``input_size`` (512 works: feature sizes are
   derived from the input, not hard-coded to 1024's);
2. decode every grid point in one batch on the GPU (``point_batch`` chunks it;
   the CPU default is 64, which decodes faster there);
3. filter the low-resolution logits (input/4) as TextRegion's generator does:
   predicted IoU and stability, box NMS on the low-resolution boxes, then the
   minimum area on the low-resolution grid; no RLE, no per-mask host round trips;
4. fuse contained masks (fusion.py, soft containment) and keep the logits at
   low resolution.

Upsampling happens later, only for surviving masks, and only to the
resolutions a consumer asks for (MaskSet.at_frame, the token grid).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from sam2.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from sam2.utils.transforms import SAM2Transforms
from torchvision.ops import nms

from .base import MaskSet, check_image
from .fusion import fuse_groups, merge_by_owner

CPU_POINT_BATCH = 64  # point_batch 0 (auto) off CUDA: one batch of every point would not fit the cache

# SAM2 masks come as 3 outputs per point; the reference ranks whole objects first.
WHOLE, PART, SUBPART = 2, 1, 0


@dataclass
class RawMasks:
    logits: torch.Tensor  # (M, h, w) low-resolution logits
    iou: torch.Tensor  # (M,) predicted IoU
    size_class: torch.Tensor  # (M,) 0 sub-part, 1 part, 2 whole (multimask output index)
    points: torch.Tensor  # (M, 2) the prompt point, normalized (x, y)


@dataclass
class ImageFeatures:
    image_embed: torch.Tensor
    high_res: List[torch.Tensor]


# The generator's knobs that change per frame (the rest need a new grid or model): same names in the config.
RUNTIME_KNOBS = ("point_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset",
                 "box_nms_thresh", "min_mask_area", "multimask", "fuse_masks", "fuse_thresh", "max_masks", "force_masks")
GENERATOR_KNOBS = ("points_per_side",) + RUNTIME_KNOBS


class Sam2Everything:
    name = "sam2"
    knobs = {k: k for k in RUNTIME_KNOBS}

    @classmethod
    def from_config(cls, config, device) -> "Sam2Everything":
        """Build SAM2 (sam2_build.py) and the generator with the config's documented generator knobs."""
        from .sam2_build import build_sam2_model

        model = build_sam2_model(config.sam2_model, config.sam2_weights, config.random_weights, device)
        knobs = {name: getattr(config, name) for name in GENERATOR_KNOBS}
        autocast = config.torch_dtype() if config.torch_device().type == "cuda" else None
        return cls(model, input_size=config.sam2_input_size, autocast_dtype=autocast, **knobs)

    def __init__(self, model: torch.nn.Module, points_per_side: int = 16, point_batch: int = 0,
                 pred_iou_thresh: float = 0.6, stability_score_thresh: float = 0.6,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.9,
                 min_mask_area: int = 100, input_size: int = 1024, multimask: bool = True,
                 fuse_masks: bool = True, fuse_thresh: float = 0.8, max_masks: int = 0,
                 force_masks: int = 0, autocast_dtype: Optional[torch.dtype] = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.points_per_side = points_per_side
        self.point_batch = point_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.min_mask_area = min_mask_area
        self.input_size = input_size
        self.multimask = multimask
        self.fuse_masks = fuse_masks
        self.fuse_thresh = fuse_thresh
        self.max_masks = max_masks
        # Benchmarks only: fill up to exactly this many masks from the best leftover candidates, so
        # timings do not depend on what random weights let through. Every stage still runs.
        self.force_masks = force_masks
        self.autocast_dtype = autocast_dtype if self.device.type == "cuda" else None
        self.transforms = SAM2Transforms(input_size, mask_threshold=0.0).to(self.device)
        grid = torch.as_tensor(build_point_grid(points_per_side), dtype=torch.float32, device=self.device)
        self.grid = grid  # (P, 2) normalized (x, y)
        pe = model.sam_prompt_encoder
        # Points are given in the prompt encoder's own frame, which is 1024 whatever we run at.
        in_h, in_w = pe.input_image_size
        self.point_coords = (grid * torch.tensor([in_w, in_h], device=self.device))[:, None, :]
        self.point_labels = torch.ones((grid.shape[0], 1), dtype=torch.int, device=self.device)
        stride = model.backbone_stride if hasattr(model, "backbone_stride") else 16
        self.feat_sizes = [(input_size // (stride // 4), input_size // (stride // 4)),
                           (input_size // (stride // 2), input_size // (stride // 2)),
                           (input_size // stride, input_size // stride)]
        # The exported graphs that replace torch_maps and torch_prompts (backends/), or None: torch.
        self.image_graph = self.prompt_graph = None
        if getattr(model.sam_mask_decoder, "dynamic_multimask_via_stability", False):
            raise ValueError("SAM2 must be built without dynamic multimask switching (apply_postprocessing=False)")
        with torch.inference_mode():
            self.image_pe = pe.pe_layer(self.feat_sizes[-1]).unsqueeze(0)
            self.no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    # --- stages ------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, image01: torch.Tensor) -> ImageFeatures:
        check_image(image01)
        x = self.transforms.transforms(image01.float())[None]
        with self._autocast():
            if self.image_graph is None:
                image_embed, high_res = self.torch_maps(x)
            else:
                image_embed, *high_res = self.image_graph(x)
        return ImageFeatures(image_embed=image_embed, high_res=list(high_res))

    def torch_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """The normalised input (1, 3, S, S) -> the image embedding and the two high-resolution maps, by
        sam2's own image encoder (the unit an exported graph replaces: backends/graphs.py)."""
        backbone_out = self.model.forward_image(x)
        _, feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + self.model.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(1, -1, *hw) for f, hw in zip(feats, self.feat_sizes)]
        return maps[-1], maps[:-1]

    def _prompt_embeddings(self, coords: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, _ = self.model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse, self.no_mask.expand(coords.shape[0], -1, *self.feat_sizes[-1])

    def torch_prompts(self, image_embed: torch.Tensor, high_res: List[torch.Tensor], coords: torch.Tensor,
                      labels: torch.Tensor, multimask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Point prompts (B, N, 2) in the prompt encoder's frame with labels (B, N) -> (B, K, h, w) low-resolution
        logits and (B, K) IoUs, by sam2's prompt encoder and mask decoder (its forward: K = 3 multimask or 1)."""
        sparse, dense = self._prompt_embeddings(coords, labels)
        masks, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=self.image_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=coords.shape[0] > 1,
            high_res_features=high_res)
        return masks, iou

    def all_prompt_masks(self, image_embed: torch.Tensor, high_res: List[torch.Tensor], coords: torch.Tensor,
                         labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same decoder before its selection: all four masks (B, 4, h, w) and IoUs (B, 4). The exported
        prompt graph computes this (backends/graphs.py), so one graph serves both settings of ``multimask``;
        the image is repeated for the batch, which for B = 1 is the image itself."""
        sparse, dense = self._prompt_embeddings(coords, labels)
        masks, iou, _, _ = self.model.sam_mask_decoder.predict_masks(
            image_embeddings=image_embed, image_pe=self.image_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, repeat_image=True, high_res_features=high_res)
        return masks, iou

    def prompts(self, feats: ImageFeatures, coords: torch.Tensor, labels: torch.Tensor,
                multimask: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (B, K, h, w) low-resolution logits and (B, K) IoUs: the three multimask outputs or the single
        mask, as sam2's mask decoder selects them (built without dynamic multimask switching)."""
        with self._autocast():
            if self.prompt_graph is None:
                return self.torch_prompts(feats.image_embed, feats.high_res, coords, labels, multimask)
            masks, iou = self.prompt_graph(feats.image_embed, *feats.high_res, coords, labels)
        return (masks[:, 1:], iou[:, 1:]) if multimask else (masks[:, :1], iou[:, :1])

    @torch.inference_mode()
    def decode(self, feats: ImageFeatures) -> RawMasks:
        n = self.grid.shape[0]
        # 0 = auto: one batch on the GPU; on the CPU, batches of 64 stay in cache and decode faster.
        step = self.point_batch if self.point_batch > 0 else (n if self.device.type == "cuda" else CPU_POINT_BATCH)
        logits, ious = [], []
        for start in range(0, n, step):
            low, iou = self.prompts(feats, self.point_coords[start:start + step],
                                    self.point_labels[start:start + step], self.multimask)
            logits.append(low)
            ious.append(iou)
        low = torch.cat(logits).float()
        iou = torch.cat(ious).float()
        k = low.shape[1]
        size_class = torch.arange(k, device=low.device).repeat(n) if k == 3 else \
            torch.full((n * k,), WHOLE, device=low.device)
        return RawMasks(low.flatten(0, 1), iou.flatten(), size_class, self.grid.repeat_interleave(k, 0))

    @torch.inference_mode()
    def postprocess(self, raw: RawMasks, frame_hw: Tuple[int, int]) -> MaskSet:
        logits, iou = raw.logits, raw.iou
        h, w = logits.shape[-2:]
        fh, fw = frame_hw
        counts = {"candidates": logits.shape[0]}
        keep = torch.ones_like(iou, dtype=torch.bool)
        if self.pred_iou_thresh > 0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0:
            stability = calculate_stability_score(logits, 0.0, self.stability_score_offset)
            keep &= stability >= self.stability_score_thresh
        binary = logits > 0
        # sam2's own boxes on the low-resolution masks (inclusive max), as the official NMS and fusion use.
        boxes = batched_mask_to_box(binary).float()
        idx = torch.nonzero(keep).squeeze(-1)
        counts["thresholds"] = int(idx.numel())
        if self.box_nms_thresh < 1.0 and idx.numel():
            idx = idx[nms(boxes[idx], iou[idx], self.box_nms_thresh)]
        counts["nms"] = int(idx.numel())
        if self.min_mask_area > 0:
            # The official rule counts pixels on the 256x256 grid of a 1024 input, after NMS.
            min_area = self.min_mask_area * (h * w) / (256 * 256)
            idx = idx[binary[idx].sum((1, 2)) > min_area]
        counts["min_area"] = int(idx.numel())
        # Priority order: whole > part > sub-part, then predicted IoU.
        idx = idx[torch.argsort(iou[idx], descending=True, stable=True)]
        idx = idx[torch.argsort(raw.size_class[idx], descending=True, stable=True)]
        # sam2 clips its low-res logits to +-32 too; the max of logits fuses like the max of probabilities.
        soft = logits[idx].clamp(-32.0, 32.0)
        scores = iou[idx]
        if self.fuse_masks and idx.numel() > 1:
            owner = fuse_groups(soft.clamp(0.0, 3.0).flatten(1), boxes[idx], self.fuse_thresh)
            soft = merge_by_owner(soft, owner)
            leaders = torch.nonzero(owner == torch.arange(owner.numel(), device=owner.device)).squeeze(-1)
            soft, scores, idx = soft[leaders], scores[leaders], idx[leaders]
        counts["fused"] = int(soft.shape[0])
        if self.force_masks > soft.shape[0]:
            unused = torch.ones_like(iou, dtype=torch.bool)
            unused[idx] = False
            spare = torch.nonzero(unused).squeeze(-1)
            spare = spare[torch.argsort(iou[spare], descending=True)[: self.force_masks - soft.shape[0]]]
            soft = torch.cat([soft, logits[spare].clamp(-32.0, 32.0)])
            scores = torch.cat([scores, iou[spare]])
        cap = self.force_masks or self.max_masks
        if cap > 0 and soft.shape[0] > cap:
            top = torch.topk(scores, cap).indices
            soft, scores = soft[top], scores[top]
        counts["kept"] = int(soft.shape[0])
        return MaskSet(masks=soft, scores=scores, frame_hw=(fh, fw), counts=counts, is_logits=True)

    def generate(self, image01: torch.Tensor) -> MaskSet:
        frame_hw = (int(image01.shape[1]), int(image01.shape[2]))
        return self.postprocess(self.decode(self.encode(image01)), frame_hw)
