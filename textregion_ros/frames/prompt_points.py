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
    """(gh, gw) map -> (<= k,) flat indices of its highest cells by greedy non-maximum suppression: the best
    cell, then the best outside a (2 radius + 1)^2 window of those taken, and so on; best first. Greedy, not
    "local maxima", so a plateau (an object whose cells all score alike) still yields k spread points.
    Each step stays on the device (argmax and a window mask); only the final filter reads back."""
    if k <= 0 or sim.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=sim.device)
    gh, gw = sim.shape
    flat = sim.flatten()
    vals = torch.where(torch.isfinite(flat), flat, torch.full_like(flat, -float("inf")))
    rows = torch.arange(gh * gw, device=sim.device) // gw
    cols = torch.arange(gh * gw, device=sim.device) % gw
    picked, ok = [], []
    for _ in range(min(k, gh * gw)):
        i = torch.argmax(vals)
        ok.append(torch.isfinite(vals[i]))
        picked.append(i)
        near = ((rows - i // gw).abs() <= radius) & ((cols - i % gw).abs() <= radius)
        vals = torch.where(near, torch.full_like(vals, -float("inf")), vals)
    return torch.stack(picked)[torch.stack(ok)]


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
    # Peaks of the map averaged over each cell's 3x3 neighbourhood: a cell inside the object, surrounded by
    # its like, outranks one on its border, whose centre pixel may lie outside (a border cell's patch mixes both).
    sim = F.avg_pool2d(sim[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    med, flat = sim.median(), sim.flatten()
    pos = spread_extremes(sim, positives, radius)
    pos = pos[flat[pos] >= med + strength * (flat.max() - med)]
    neg = spread_extremes(-sim, negatives, radius)
    neg = neg[flat[neg] <= med - strength * (med - flat.min())]
    neg = neg[~torch.isin(neg, pos)]  # a flat map has one cell in both: it is positive
    points = cell_centres(torch.cat([pos, neg]), tuple(sim.shape), frame_hw)
    labels = torch.cat([torch.ones(len(pos), dtype=torch.int), torch.zeros(len(neg), dtype=torch.int)])
    return points, labels.to(sim.device)
