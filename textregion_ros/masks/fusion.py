"""TextRegion's containment fusion, vectorized.

Masks are visited in priority order (whole objects before parts before
sub-parts, each by predicted IoU). A mask not yet absorbed leads a group and
absorbs every later, unabsorbed mask whose soft containment with it exceeds
the threshold and whose box overlaps it (IoU > 0.2). Containment is the
official one: sum(min(a, b)) / min(sum(a), sum(b)) on logits clamped to
[0, 3]. Each group becomes the pixelwise max of its members.

The greedy pass has a sequential dependency (only leaders absorb), solved
here as a fixed point over all masks at once: after k rounds the first k
leaders are exact, and rounds stop when nothing changes, typically in a few.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou


PAIR_CHUNK_ELEMENTS = 1 << 24  # pairs x pixels held at once while summing minima


def soft_containment(soft: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """(M, P) non-negative masks and (K, 2) index pairs -> (K,) sum(min(a, b)) / min(sum(a), sum(b))."""
    area = soft.sum(-1)
    out = soft.new_zeros(pairs.shape[0])
    step = max(1, PAIR_CHUNK_ELEMENTS // max(soft.shape[1], 1))
    for s in range(0, pairs.shape[0], step):  # chunks bound memory; all pairs of a chunk in one op
        i, j = pairs[s:s + step, 0], pairs[s:s + step, 1]
        inter = torch.minimum(soft[i], soft[j]).sum(-1)
        smaller = torch.minimum(area[i], area[j])
        out[s:s + step] = torch.where(smaller >= 1e-8, inter / smaller.clamp_min(1e-8), torch.zeros_like(inter))
    return out


def fuse_groups(soft: torch.Tensor, boxes: torch.Tensor, thresh: float = 0.8,
                box_gate: float = 0.2) -> torch.Tensor:
    """Masks (M, P) clamped to [0, 3], already in priority order -> owner (M,): each mask's group leader."""
    m = soft.shape[0]
    ar = torch.arange(m, device=soft.device)
    if m == 0:
        return ar
    # Containment is only needed where the box gate passes and an earlier mask could absorb a later one.
    gate = torch.triu(box_iou(boxes.float(), boxes.float()) > box_gate, diagonal=1)
    pairs = torch.nonzero(gate)
    adj = torch.zeros((m, m), dtype=torch.bool, device=soft.device)
    if pairs.numel():
        adj[pairs[:, 0], pairs[:, 1]] = soft_containment(soft.float(), pairs) > thresh
    leaders = torch.ones(m, dtype=torch.bool, device=soft.device)
    for _ in range(m):
        new = ~(adj & leaders[:, None]).any(0)
        if torch.equal(new, leaders):
            break
        leaders = new
    absorbing = adj & leaders[:, None]
    first_leader = absorbing.to(torch.uint8).argmax(0)
    return torch.where(absorbing.any(0), first_leader, ar)


def merge_by_owner(masks: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """(M, h, w) masks or logits -> (M, h, w) where each leader row is its group's pixelwise max."""
    flat = masks.flatten(1)
    out = torch.zeros_like(flat).scatter_reduce(0, owner[:, None].expand_as(flat), flat,
                                                reduce="amax", include_self=False)
    return out.view_as(masks)
