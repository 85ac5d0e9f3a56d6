"""A frame's detections voxelized in one pass, and the per-detection arrays association needs.

Fusing 64 regions one by one costs dozens of small numpy calls per region, and at that size the
calls' overhead, not the arithmetic, is the frame's cost. Here every detection's points are binned
together: each point's voxel index is taken relative to its detection's lowest voxel, packed with
the detection's number into one int64 (``DET_SHIFT`` bits of local index), and a single
``np.unique`` gives every detection's sorted voxels at once. The local order equals the global
key order within a detection, so each detection's slice of ``keys`` is sorted, as objects' keys are.

A detection wider than 2**15 voxels on some axis (327 m at 1 cm: a stray far point) cannot be packed
that way; it is binned on its own, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .objects import bin_points, neighbour_keys, pack, summed

LOCAL_BITS = 15
LOCAL_MAX = (1 << LOCAL_BITS) - 1
DET_SHIFT = 3 * LOCAL_BITS


@dataclass
class FrameVoxels:
    size: float  # voxel side
    keys: np.ndarray  # (U,) global voxel keys, detection by detection, sorted within each
    sums: np.ndarray  # (U, 3) summed points per voxel
    weights: np.ndarray  # (U,) points per voxel
    start: np.ndarray  # (D + 1,) detection d's voxels are [start[d], start[d + 1])

    def __len__(self) -> int:
        return len(self.start) - 1

    def of(self, d: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detection d's (keys, sums, weights)."""
        a, b = self.start[d], self.start[d + 1]
        return self.keys[a:b], self.sums[a:b], self.weights[a:b]

    def means(self) -> np.ndarray:
        return self.sums / self.weights[:, None]

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        """(D, 3) lowest and highest voxel mean of each detection (every detection has a voxel)."""
        m = self.means()
        return np.minimum.reduceat(m, self.start[:-1], axis=0), np.maximum.reduceat(m, self.start[:-1], axis=0)

    def sampled_neighbours(self, samples: int) -> Tuple[np.ndarray, np.ndarray]:
        """Up to ``samples`` voxels of each detection, evenly spaced in key order, with their 26 neighbours:
        ((S, 27) keys, (D + 1,) where each detection's rows start)."""
        n = np.diff(self.start)
        m = np.minimum(n, samples)
        first = np.concatenate([[0], np.cumsum(m)])
        det = np.repeat(np.arange(len(n)), m)
        j = np.arange(first[-1]) - first[det]  # 0 .. m-1 within each detection
        step = np.where(m > 1, (n - 1) / np.maximum(m - 1, 1), 0.0)
        rows = self.start[det] + (j * step[det]).astype(np.int64)
        return neighbour_keys(self.keys[rows]), first


def bin_frame(points: List[np.ndarray], size: float) -> FrameVoxels:
    """Each detection's (N_d, 3) points (N_d >= 1) -> their voxels at ``size``, all in one np.unique."""
    counts = np.array([len(p) for p in points], np.int64)
    flat = np.concatenate(points)
    ijk = np.floor(flat / size).astype(np.int64)
    det = np.repeat(np.arange(len(points)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    base = np.minimum.reduceat(ijk, starts, axis=0)
    local = ijk - base[det]
    wide = (np.maximum.reduceat(local, starts, axis=0) > LOCAL_MAX).any(1)
    if wide.any():
        return _bin_each(points, size)
    code = (det << DET_SHIFT) | (local[:, 0] << 2 * LOCAL_BITS) | (local[:, 1] << LOCAL_BITS) | local[:, 2]
    uniq, inv = np.unique(code, return_inverse=True)
    sums = summed(inv, flat, len(uniq))
    weights = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    udet = uniq >> DET_SHIFT
    uloc = np.stack([(uniq >> 2 * LOCAL_BITS) & LOCAL_MAX, (uniq >> LOCAL_BITS) & LOCAL_MAX, uniq & LOCAL_MAX], -1)
    keys = pack(uloc + base[udet])
    start = np.searchsorted(udet, np.arange(len(points) + 1))
    return FrameVoxels(size, keys, sums, weights, start)


def _bin_each(points: List[np.ndarray], size: float) -> FrameVoxels:
    """The exact, slower path: one bin_points per detection."""
    parts = [bin_points(p, np.ones(len(p)), size) for p in points]
    start = np.concatenate([[0], np.cumsum([len(k) for k, _, _ in parts])])
    return FrameVoxels(size, np.concatenate([k for k, _, _ in parts]), np.concatenate([s for _, s, _ in parts]),
                       np.concatenate([w for _, _, w in parts]), start)
