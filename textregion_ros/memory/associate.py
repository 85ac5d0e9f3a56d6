"""Which remembered object each of a frame's detections is: gated pairs, their 3D overlap, one assignment.

A detection and an object can match when their boxes touch, their token cosine passes ``min_cosine``
and their overlap (the share of the detection's sampled voxels that are the object's or next to
them, at the object's voxel size) passes ``min_overlap``. The score ``w * overlap + (1 - w) * cosine``
of the pairs that pass goes to scipy's Hungarian solver (``linear_sum_assignment``), one assignment
per frame. The overlaps of every pair whose object is at the frame's voxel size come from one
search over the candidates laid end to end (segments.py); a coarsened object is probed on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .config import MemoryConfig
from .frame_voxels import FrameVoxels
from .objects import RUN, RUN_OFFSETS, MemoryObject, neighbour_runs, ranges, voxel_keys
from .segments import Segments
from .table import ObjectTable

OVERLAP_SAMPLES = 48  # voxels of a detection tested for overlap: the share to about +-7%, at a fixed cost


@dataclass
class Association:
    matches: Dict[int, MemoryObject]  # detection index -> its object
    segments: Optional[Segments]  # the candidates at the frame's voxel size, for merging (None: none, or no fit)
    # (detection, table row) of every pair whose boxes touch, whatever their cosine (faults.own_share's others)
    touching: Optional[Tuple[np.ndarray, np.ndarray]] = None


def associate(objects: Dict[int, MemoryObject], table: ObjectTable, cfg: MemoryConfig, tokens: np.ndarray,
              vox: FrameVoxels, dlo: np.ndarray, dhi: np.ndarray) -> Association:
    """``tokens`` (D, dim) of the detections, ``vox`` their voxels, ``dlo``/``dhi`` (D, 3) their boxes."""
    if not len(tokens) or not objects:
        return Association({}, None)
    touching = touching_pairs(table, dlo, dhi)
    pi, pj, cos = gated_pairs(table, cfg, tokens, *touching)
    if not len(pi):
        return Association({}, None, touching)
    cols, col_of = np.unique(pj, return_inverse=True)
    cand = [objects[int(i)] for i in table.ids[cols]]
    ov, segments = overlaps(cand, col_of, pi, vox)
    ok = ov >= cfg.min_overlap
    score = np.full((len(tokens), len(cols)), -np.inf)
    score[pi[ok], col_of[ok]] = cfg.overlap_weight * ov[ok] + (1 - cfg.overlap_weight) * cos[ok]
    if not ok.any():
        return Association({}, segments, touching)
    valid = np.isfinite(score)
    rows, picked = linear_sum_assignment(np.where(valid, -score, 1e6))
    return Association({int(r): cand[c] for r, c in zip(rows, picked) if valid[r, c]}, segments, touching)


def touching_pairs(table: ObjectTable, dlo: np.ndarray, dhi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(detection, table row) of the pairs whose boxes touch."""
    lo, hi = table.lo, table.hi
    # Boxes that overlap along x: with the rows sorted by their low x, a box can only touch those from its
    # own low x less the widest box to its high x, one slice per detection instead of a (D, N) test. Dead
    # rows (an empty box, low x +inf) sort last, beyond every slice.
    order = np.argsort(lo[:, 0])
    low = lo[order, 0]
    width = float(np.max(hi[:, 0] - lo[:, 0], initial=0.0)) * (1 + 1e-9) + 1e-9  # no box lost to rounding
    a = np.searchsorted(low, dlo[:, 0] - width)
    n = np.searchsorted(low, dhi[:, 0], side="right") - a
    pi, pj = np.repeat(np.arange(len(dlo)), n), order[ranges(a, n)]
    touch = ((dlo[pi] <= hi[pj]) & (dhi[pi] >= lo[pj])).all(1)
    return pi[touch], pj[touch]


def gated_pairs(table: ObjectTable, cfg: MemoryConfig, tokens: np.ndarray, pi: np.ndarray, pj: np.ndarray
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(detection, table row, cosine) of the touching pairs (touching_pairs) whose cosine passes the gate."""
    cos = (tokens[pi] * table.tokens[pj]).sum(1)
    gate = cos >= cfg.min_cosine
    return pi[gate], pj[gate], cos[gate]


def overlaps(cand: List[MemoryObject], col_of: np.ndarray, pi: np.ndarray, vox: FrameVoxels
             ) -> Tuple[np.ndarray, Optional[Segments]]:
    """(P,) overlap of each pair (detection pi[p], object cand[col_of[p]]), and the segments of the candidates
    at the frame's voxel size."""
    samples, first = vox.sampled(OVERLAP_SAMPLES)
    ov = np.zeros(len(pi))
    base = np.array([c.voxel_size == vox.size and len(c.keys) > 0 for c in cand])
    segments = None
    if base.any():
        # Each candidate's reach: every key its pairs' detections (and their neighbours) can look up.
        reach_lo = np.full(len(cand), np.iinfo(np.int64).max)
        reach_hi = np.full(len(cand), np.iinfo(np.int64).min)
        np.minimum.at(reach_lo, col_of, vox.keys[vox.start[:-1]][pi] + RUN_OFFSETS.min())
        np.maximum.at(reach_hi, col_of, vox.keys[vox.start[1:] - 1][pi] + RUN_OFFSETS.max() + RUN)
        cols = np.flatnonzero(base)
        segments = Segments([cand[c] for c in cols], reach_lo[cols], reach_hi[cols])
        if not segments.fits:
            segments, base = None, np.zeros(len(cand), bool)
    batched = np.flatnonzero(base[col_of])
    if len(batched):
        seg_of_col = np.cumsum(base) - 1
        p = batched[np.argsort(seg_of_col[col_of[batched]], kind="stable")]  # by segment: a near-sorted search
        m = first[pi[p] + 1] - first[pi[p]]
        hits = segments.next_to(np.repeat(seg_of_col[col_of[p]], m), samples[ranges(first[pi[p]], m)])
        ov[p] = np.add.reduceat(hits.astype(np.float64), np.r_[0, np.cumsum(m)[:-1]]) / m
    for p in np.flatnonzero(~base[col_of]):  # coarsened objects: the detection's voxels (means) at their size
        obj = cand[col_of[p]]
        _, sums, w = vox.of(pi[p])
        ov[p] = overlap(sums / w[:, None], obj)
    return ov, segments


def sampled_runs(points: np.ndarray, size: float) -> np.ndarray:
    """(S, 9) neighbour runs of up to OVERLAP_SAMPLES of the points' voxels (evenly spaced in key order)."""
    keys = np.unique(voxel_keys(points, size))
    if len(keys) > OVERLAP_SAMPLES:
        keys = keys[np.linspace(0, len(keys) - 1, OVERLAP_SAMPLES).astype(int)]
    return neighbour_runs(keys)


def overlap(points: np.ndarray, obj: MemoryObject) -> float:
    """Share of ``points``' voxels (at the object's voxel size, sampled) that are the object's or next to them."""
    runs = sampled_runs(points, obj.voxel_size)
    return float(obj.next_to(runs).mean()) if len(runs) else 0.0
