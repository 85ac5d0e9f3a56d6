"""A target-mode frame: the queries choose where SAM2 looks, and only their regions are made.

1. One encoder pass, as in everything-mode; each query's patch map comes from it (patch_maps.py).
2. Prompts per query: all its positive points with its negatives; each positive alone with the
   negatives (a peak on a second instance gets a mask of its own); and, when the query had a target
   on the previous frame, that box with all the points.
3. The prompts of every query go through SAM2's prompt decoder (a Prompter, masks/base.py) on the
   frame's own image embedding, multimask, batched by shape: prompts with the same number of points
   and the same use of a box share a batch, so none is padded and each is decoded as SAM2's
   predictor decodes it alone.
4. Candidates of one query that are the same mask (several prompts on one object) are kept once.
   Every candidate gets a region token in one pooling pass, by everything-mode's pooling and global-
   patch removal, and each query grounds among its own candidates by everything-mode's rule
   (background competition, margin, abstention).
5. The result has one region per query, its best candidate; a query without a positive point (its
   map has no clear peak) or without candidates has none and is not found.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from ..classify import classify, ground_from_scores, query_scores
from ..encoders.text import LabelEmbeddings
from ..masks.base import MaskSet
from ..results import FrameResult, groundings_from
from ..tokens import encode_value_map, region_tokens
from .patch_maps import patch_maps
from .prompt_points import prompt_points


@dataclass
class Prompt:
    query: int  # index into the frame's queries
    points: torch.Tensor  # (N, 2) frame pixels (x, y)
    labels: torch.Tensor  # (N,) 1 positive, 0 negative
    box: Optional[torch.Tensor] = None  # (4,) xyxy frame pixels


def query_prompts(q: int, sim: torch.Tensor, frame_hw: Tuple[int, int], positives: int, negatives: int,
                  box: Optional[torch.Tensor] = None) -> List[Prompt]:
    """One query's prompts from its (gh, gw) patch map; none when the map has no positive peak."""
    points, labels = prompt_points(sim, frame_hw, positives, negatives)
    pos = torch.nonzero(labels == 1).flatten()
    if not len(pos):
        return []
    neg = torch.nonzero(labels == 0).flatten()
    prompts = [Prompt(q, points, labels)]
    if len(pos) > 1:
        for p in pos:
            keep = torch.cat([p[None], neg])
            prompts.append(Prompt(q, points[keep], labels[keep]))
    if box is not None:
        prompts.append(Prompt(q, points, labels, box.float()))
    return prompts


def decode_prompts(prompter, feats, prompts: List[Prompt], frame_hw: Tuple[int, int]
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (C, h, w) candidate logits, (C,) their scores, (C,) the query each answers; one decoder batch per
    prompt shape."""
    groups: Dict[Tuple[int, bool], List[Prompt]] = {}
    for p in prompts:
        groups.setdefault((len(p.points), p.box is not None), []).append(p)
    logits, scores, owner = [], [], []
    for (_, has_box), group in groups.items():
        boxes = torch.stack([p.box for p in group]) if has_box else None
        out = prompter.prompt(feats, torch.stack([p.points for p in group]), torch.stack([p.labels for p in group]),
                              frame_hw, boxes)
        k = out.low_res.shape[1]
        logits.append(out.low_res.flatten(0, 1))
        scores.append(out.iou.flatten())
        owner.append(torch.tensor([p.query for p in group], device=out.iou.device).repeat_interleave(k))
    return torch.cat(logits), torch.cat(scores), torch.cat(owner)


DUPLICATE_IOU = 0.9  # two candidates of one query this alike are one region (several prompts find one object)


def distinct(logits: torch.Tensor, scores: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Indices of the candidates to keep: per query, a candidate whose mask overlaps a better-scored one of the
    same query by more than DUPLICATE_IOU is dropped (so a margin is measured against another region, not
    against a copy of the winner)."""
    order = torch.argsort(scores, descending=True, stable=True)
    b = (logits[order] > 0).flatten(1).float()
    inter = b @ b.T
    area = inter.diagonal()
    iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1.0)
    same = owner[order][:, None] == owner[order][None, :]
    earlier = torch.ones_like(same).triu(1)  # [i, j]: i ranks above j
    dup = ((iou > DUPLICATE_IOU) & same & earlier).any(0)
    return order[~dup]


def ground_own(probs: torch.Tensor, cos: torch.Tensor, owner: torch.Tensor, abstain: float):
    """classify.ground_from_scores with each query choosing among its own candidates only: (C, Q) scores,
    (C,) owner -> (region, prob, cosine, margin, found) per query."""
    own = owner[:, None] == torch.arange(probs.shape[1], device=owner.device)[None]
    neg = torch.tensor(float("-inf"), device=probs.device, dtype=probs.dtype)
    region, prob, best_cos, margin, found = ground_from_scores(torch.where(own, probs, neg),
                                                               torch.where(own, cos, neg), abstain)
    has = own.any(0)
    zero = torch.zeros_like(prob)
    return (torch.where(has, region, -1), torch.where(has, prob, zero), torch.where(has, best_cos, zero),
            torch.where(has, margin, zero), found & has)


@dataclass(frozen=True)
class TargetParts:
    """What a target frame uses of the built models: handed in, so nothing calls back into the Pipeline."""
    encoder: object  # ImageTextEncoder
    prompter: object  # a Prompter (masks/base.py): SAM2's prompt encoder and mask decoder
    config: object  # PipelineConfig
    vocab: object  # Vocabulary: the frame's one snapshot
    background: LabelEmbeddings  # what a query competes with (the vocabulary's background, or the fallback)
    global_weight: float


@torch.inference_mode()
def target_frame(parts: TargetParts, img: torch.Tensor, q_emb: LabelEmbeddings,
                 boxes: Optional[Dict[str, torch.Tensor]] = None) -> FrameResult:
    """(3, H, W) image on the device and the frame's queries -> a FrameResult of kind "target" whose regions
    are each query's best candidate (``groundings[q].region == q`` when found, -1 without a candidate)."""
    if parts.prompter is None:
        raise ValueError("target mode needs a mask source that takes prompts (mask_source sam2)")
    cfg, vocab, enc, t0 = parts.config, parts.vocab, parts.encoder, time.perf_counter()
    frame_hw = (int(img.shape[1]), int(img.shape[2]))
    fmap = encode_value_map(enc, img, cfg.tiles, cfg.use_global_view, parts.global_weight)
    feats = parts.prompter.encode(img)
    maps = patch_maps(enc, fmap, q_emb, clip_head=cfg.clip_head)
    prompts = [p for q, label in enumerate(q_emb.labels) for p in query_prompts(
        q, maps[q], frame_hw, cfg.target_points, cfg.target_negatives, (boxes or {}).get(label))]
    dim = vocab.label_emb.embeddings.shape[1]
    if prompts:
        logits, scores, owner = decode_prompts(parts.prompter, feats, prompts, frame_hw)
        keep = distinct(logits, scores, owner)
        logits, scores, owner = logits[keep], scores[keep], owner[keep]
        cand = MaskSet(logits.clamp(-32.0, 32.0), scores, frame_hw, {"prompts": len(prompts)}, is_logits=True)
        rt = region_tokens(enc, fmap, cand.patch_weights(fmap.grid_hw), cfg.remove_global_patches,
                           cfg.global_patch_threshold, cfg.clip_head)
        cand, owner = cand.select(rt.kept), owner[rt.kept]
        tokens = rt.tokens if len(rt.kept) else img.new_zeros((0, dim))
    else:
        cand = MaskSet(img.new_zeros((0, 1, 1)), img.new_zeros(0), frame_hw, {"prompts": 0}, is_logits=True)
        tokens, owner = img.new_zeros((0, dim)), torch.zeros(0, dtype=torch.long, device=img.device)
    return _one_region_per_query(parts, cand, tokens, owner, q_emb, frame_hw, t0)


def _one_region_per_query(parts: TargetParts, cand: MaskSet, tokens: torch.Tensor, owner: torch.Tensor,
                          q_emb: LabelEmbeddings, frame_hw, t0: float) -> FrameResult:
    """Ground each query among its candidates and keep only the winners, in query order (against the frame's
    one vocabulary snapshot: a vocabulary swapped in mid-frame must not mix with the one it started with)."""
    cfg, vocab, nq = parts.config, parts.vocab, len(q_emb)
    sigmoid = parts.encoder.sigmoid_logit()
    if len(tokens):
        probs, cos = query_scores(tokens, q_emb, parts.background, cfg.region_logit_scale, sigmoid)
        region, prob, best_cos, margin, found = ground_own(probs, cos, owner, cfg.abstain_threshold)
    else:
        region = torch.full((nq,), -1, dtype=torch.long, device=tokens.device)
        prob = best_cos = margin = torch.zeros(nq, device=tokens.device)
        found = torch.zeros(nq, dtype=torch.bool, device=tokens.device)
    has = region >= 0
    picked = region[has]
    # Region q of the result is query q's winner; queries without one get no region (-1).
    new_index = torch.where(has, torch.cumsum(has.long(), 0) - 1, -1)
    masks = cand.select(picked)
    masks.counts.update({"candidates": len(cand), "kept": len(picked)})
    kept_tokens = tokens[picked]
    classes = classify(kept_tokens, vocab.label_emb, cfg.region_logit_scale, sigmoid)
    groundings = groundings_from(q_emb.labels, (new_index, prob, best_cos, margin, found))
    return FrameResult(frame_hw=frame_hw, masks=masks, tokens=kept_tokens, classes=classes, labels=vocab.labels,
                       num_background=vocab.num_background, queries=tuple(q_emb.labels), groundings=groundings,
                       region_logit_scale=cfg.region_logit_scale, timings={"target": time.perf_counter() - t0},
                       vocab=vocab, query_embeddings=q_emb, kind="target")
