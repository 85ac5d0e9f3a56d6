"""A frame's detections voxelized in one pass, and the per-detection arrays association needs.

Fusing 64 regions one by one costs dozens of small numpy calls per region, and at that size the
calls' overhead, not the arithmetic, is the frame's cost. Here every detection's points are binned
together: each point's voxel index is taken relative to its detection's lowest voxel and packed,
with the point's index within its detection below it, into one integer, using only as many bits per
field as this frame needs. The detections are the rows of one padded array, and one sort along its
rows then gives every detection's sorted voxels and which points fell in each, where
``np.unique(return_inverse=True)`` would argsort (on this CPU twenty times slower than a sort of the
same array). The local order equals the global key order within a detection, so each detection's
slice of ``keys`` is sorted, as objects' keys are.

A frame whose fields do not fit 62 bits (a stray point hundreds of metres off), or whose padded rows
would be mostly padding (one huge detection among small ones), is binned detection by detection
instead, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .objects import bin_points, evenly, pack_rows

CODE_BITS = 62  # the packed code's budget: an int64 that stays positive
PAD_LIMIT, PAD_SLACK = 4, 1 << 16  # padded rows beyond 4N + 64k (one huge detection among small ones): bin each


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

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        """(D, 3) lowest and highest voxel mean of each detection (every detection has a voxel). Reduced as
        (3, U) rows: reduceat along the first axis of (U, 3) is three times slower than the transpose and all."""
        m = np.ascontiguousarray(self.sums.T) / self.weights
        at = self.start[:-1]
        return np.minimum.reduceat(m, at, axis=1).T, np.maximum.reduceat(m, at, axis=1).T

    def sampled(self, samples: int) -> Tuple[np.ndarray, np.ndarray]:
        """Up to ``samples`` voxels of each detection, evenly spaced in key order: ((S,) keys, (D + 1,) where
        each detection's rows start)."""
        n = np.diff(self.start)
        m = np.minimum(n, samples)
        within, first = evenly(n, m)
        return self.keys[np.repeat(self.start[:-1], m) + within], first


def bin_frame(points: List[np.ndarray], size: float) -> FrameVoxels:
    """Each detection's (N_d, 3) points (N_d >= 1) -> their voxels at ``size``, all in one sort. The work is
    done on (3, N) arrays, per row: numpy reduces and gathers an (N, 3) array along its first axis several
    times slower."""
    counts = np.array([len(p) for p in points], np.int64)
    xyz = np.concatenate([p.T for p in points], axis=1)
    ijk = np.floor(xyz / size).astype(np.int64)
    first_point = np.r_[0, np.cumsum(counts)[:-1]]
    base = np.minimum.reduceat(ijk, first_point, axis=1)
    local = ijk - np.repeat(base, counts, axis=1)
    bits = [int(m).bit_length() for m in local.max(1)]  # per axis, this frame's widest detection
    width = int(counts.max())
    i_bits = (width - 1).bit_length()
    if sum(bits) + i_bits > CODE_BITS or len(points) * width > PAD_LIMIT * xyz.shape[1] + PAD_SLACK:
        return _bin_each(points, size)
    offset = np.repeat(first_point, counts)  # each point's detection's first point
    code = _row_sorted(local, bits, i_bits, counts, width, np.arange(xyz.shape[1]) - offset)
    order, voxel = (code & ((1 << i_bits) - 1)) + offset, code >> i_bits
    starts = np.r_[True, voxel[1:] != voxel[:-1]]  # where each voxel's points begin in the sort
    starts[first_point] = True  # a detection's first voxel, whatever the one before it
    first = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    sums = np.stack([np.bincount(group, weights=c, minlength=len(first)) for c in xyz.take(order, axis=1)], -1)
    weights = np.diff(np.r_[first, xyz.shape[1]]).astype(np.float64)
    keys = pack_rows(ijk.take(order[first], axis=1))  # each voxel's key from one of its points
    start = np.searchsorted(first, np.r_[first_point, xyz.shape[1]])
    return FrameVoxels(size, keys, sums, weights, start)


def _row_sorted(local: np.ndarray, bits: List[int], i_bits: int, counts: np.ndarray, width: int,
                within: np.ndarray) -> np.ndarray:
    """Each point's code (its voxel packed above ``within``, its index within its detection), sorted within
    each detection: (N,) codes, detection by detection. The detections are rows of one padded (D, width)
    array sorted along its rows, which numpy does many times faster than one sort of the N codes end to end
    (on this CPU 0.03 ms against 1 ms at 64 x 512, in int32), and a row needs no detection field, so the
    codes most often fit 31 bits."""
    dtype = np.int32 if sum(bits) + i_bits <= 31 else np.int64
    shifts = (bits[1] + bits[2], bits[2], 0)
    code = (local[0] << shifts[0] | local[1] << shifts[1] | local[2]) << i_bits | within
    rows = np.full((len(counts), width), np.iinfo(dtype).max, dtype)  # padding sorts after every code
    rows.reshape(-1)[within + np.repeat(np.arange(len(counts)) * width, counts)] = code
    rows.sort(axis=1)
    return rows[np.arange(width) < counts[:, None]].astype(np.int64)


def _bin_each(points: List[np.ndarray], size: float) -> FrameVoxels:
    """The exact, slower path: one bin_points per detection."""
    parts = [bin_points(p, np.ones(len(p)), size) for p in points]
    start = np.concatenate([[0], np.cumsum([len(k) for k, _, _ in parts])])
    return FrameVoxels(size, np.concatenate([k for k, _, _ in parts]), np.concatenate([s for _, s, _ in parts]),
                       np.concatenate([w for _, _, w in parts]), start)
