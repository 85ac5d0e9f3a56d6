"""Target mode, the parts without SAM2: where the query is in the frame, and which candidate mask it is.

* ``patch_similarity``: the query's cosine to every patch (or block of patches), each patch's token
  made by the same pooling and head as region tokens (a region of one patch), so it holds for every
  encoder family, on the frame's own value features: no second encoder pass.
* ``ground_candidates``: candidate masks (SAM2's answers to the prompts, or given ones) scored against
  the query as everything-mode scores regions: the same pooling, global-patch removal and grounding
  rule, with its margin and abstention.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ..classify import ground, label_cosines
from ..encoders.text import LabelEmbeddings
from ..masks.given import given_masks
from ..tokens import FeatureMap, region_tokens


def block_weights(grid_hw: Tuple[int, int], block: int, device) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """(cells, N) weights: one region per ``block`` x ``block`` patches of the grid -> (weights, cell grid)."""
    gh, gw = grid_hw
    ch, cw = -(-gh // block), -(-gw // block)
    rows = torch.arange(gh, device=device) // block
    cols = torch.arange(gw, device=device) // block
    cell = (rows[:, None] * cw + cols[None, :]).flatten()  # (N,) the cell of each patch
    weights = torch.zeros(ch * cw, gh * gw, device=device)
    weights[cell, torch.arange(gh * gw, device=device)] = 1.0
    return weights, (ch, cw)


def patch_maps(encoder, fmap: FeatureMap, queries: LabelEmbeddings, block: int = 1,
               clip_head: str = "segmentation") -> torch.Tensor:
    """(Q, cells_h, cells_w) cosine of each query to each cell's token: one pooling pass, one matmul."""
    weights, cells = block_weights(fmap.grid_hw, block, fmap.values.device)
    rt = region_tokens(encoder, fmap, weights, remove_global=False, clip_head=clip_head)
    return label_cosines(rt.tokens, queries).T.reshape(len(queries), *cells)


def patch_similarity(encoder, fmap: FeatureMap, query: LabelEmbeddings, block: int = 1,
                     clip_head: str = "segmentation") -> torch.Tensor:
    """(cells_h, cells_w) cosine of the query (its first label) to each cell's token."""
    return patch_maps(encoder, fmap, query, block, clip_head)[0]


def ground_candidates(parts, fmap: FeatureMap, masks: torch.Tensor, query: LabelEmbeddings):
    """(C, H, W) candidate masks -> (MaskSet of the candidates that got tokens, their tokens, grounding
    tensors (region, prob, cosine, margin, found) for the query), by everything-mode's rules. ``parts``: the
    target frame's TargetParts (target.py)."""
    cfg, device = parts.config, fmap.values.device
    maskset = given_masks(masks.to(device))
    rt = region_tokens(parts.encoder, fmap, maskset.patch_weights(fmap.grid_hw), cfg.remove_global_patches,
                       cfg.global_patch_threshold, cfg.clip_head)
    maskset = maskset.select(rt.kept)
    tokens = rt.tokens if len(rt.kept) else torch.zeros((0, query.embeddings.shape[1]), device=device)
    return maskset, tokens, ground(tokens, query, parts.background, cfg.region_logit_scale, cfg.abstain_threshold,
                                   parts.encoder.sigmoid_logit())
