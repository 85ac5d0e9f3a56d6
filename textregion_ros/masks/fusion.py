"""TextRegion's containment fusion, vectorized.

Masks are visited in priority order (whole objects before parts before
sub-parts, each by predicted IoU). A mask not yet absorbed leads a group and
absorbs every later, unabsorbed mask whose containment with it (intersection
over the smaller area) exceeds the threshold and whose box overlaps it (IoU >
0.2). Each group becomes the pixelwise max of its members.

The greedy pass has a sequential dependency (only leaders absorb), solved
here as a fixed point over all masks at once: after k rounds the first k
leaders are exact, and rounds stop when nothing changes, typically in a few.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou


def containment(binary: torch.Tensor) -> torch.Tensor:
    """(M, P) {0,1} -> (M, M) intersection over the smaller area."""
    # 0/1 values are exact in half precision and the GPU accumulates in fp32.
    b = binary.to(torch.float16 if binary.is_cuda else torch.float32)
    area = b.float().sum(-1)
    inter = (b @ b.T).float()
    smaller = torch.minimum(area[:, None], area[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp_min(1e-8), torch.zeros_like(inter))


def fuse_groups(binary: torch.Tensor, boxes: torch.Tensor, thresh: float = 0.8,
                box_gate: float = 0.2) -> torch.Tensor:
    """Masks already in priority order -> owner (M,): the index of each mask's group leader."""
    m = binary.shape[0]
    ar = torch.arange(m, device=binary.device)
    if m == 0:
        return ar
    adj = (containment(binary) > thresh) & (box_iou(boxes, boxes) > box_gate)
    adj = torch.triu(adj, diagonal=1)  # only an earlier mask absorbs a later one
    leaders = torch.ones(m, dtype=torch.bool, device=binary.device)
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
