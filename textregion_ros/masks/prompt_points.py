"""Where SAM2 should look for a query: point prompts from a query-to-patch similarity map.

As CLIP Surgery's ``similarity_map_to_points`` does, the highest cells become positive points and
the lowest negative ones; here the positives are the map's local maxima after non-maximum
suppression (so k points spread over the object, or over k candidate objects, instead of k
neighbours of one peak), and the negatives are spread the same way over the lowest cells.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def spread_extremes(sim: torch.Tensor, k: int, radius: int) -> torch.Tensor:
    """(gh, gw) map -> (<= k,) flat indices of its highest local maxima, each the highest within ``radius``
    cells (a square window), best first."""
    if k <= 0 or sim.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=sim.device)
    pooled = F.max_pool2d(sim[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    peak = (sim >= pooled) & torch.isfinite(sim)
    values = torch.where(peak, sim, torch.full_like(sim, -float("inf"))).flatten()
    top = torch.topk(values, min(k, int(peak.sum())))
    return top.indices


def cell_centres(index: torch.Tensor, grid_hw: Tuple[int, int], frame_hw: Tuple[int, int]) -> torch.Tensor:
    """Flat cell indices -> (N, 2) (x, y) frame pixels of the cells' centres."""
    gh, gw = grid_hw
    h, w = frame_hw
    rows, cols = index // gw, index % gw
    return torch.stack([(cols.float() + 0.5) * w / gw, (rows.float() + 0.5) * h / gh], -1)


def prompt_points(sim: torch.Tensor, frame_hw: Tuple[int, int], positives: int = 3, negatives: int = 2,
                  radius: int = 2, strength: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """(gh, gw) similarity of the query to each patch -> (points (P + N, 2) frame pixels, labels: 1 for the
    positives, 0 for the negatives). A peak is a positive only when it rises ``strength`` of the way from
    the map's median to its maximum: a bump of the background is a local maximum too, but not the query.
    Negatives sink as far below the median."""
    med, flat = sim.median(), sim.flatten()
    pos = spread_extremes(sim, positives, radius)
    pos = pos[flat[pos] >= med + strength * (flat.max() - med)]
    neg = spread_extremes(-sim, negatives, radius)
    neg = neg[flat[neg] <= med - strength * (med - flat.min())]
    neg = neg[~torch.isin(neg, pos)]  # a flat map has one cell in both: it is positive
    points = cell_centres(torch.cat([pos, neg]), tuple(sim.shape), frame_hw)
    labels = torch.cat([torch.ones(len(pos), dtype=torch.int), torch.zeros(len(neg), dtype=torch.int)])
    return points, labels.to(sim.device)
