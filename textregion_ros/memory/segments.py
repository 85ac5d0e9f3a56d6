"""Several objects' voxels end to end in one sorted array: one search serves lookups into all of them.

A frame touches a few dozen objects, and doing their overlap tests and merges object by object
costs a dozen numpy calls each; at that size the calls' overhead, not the work, is the frame's
cost. Here the objects' sorted keys are laid end to end and shifted so that segment s occupies
``[s * stride, (s + 1) * stride)``: within a segment keys keep their order and equality, and across
segments the array is sorted, so ``np.searchsorted`` finds a key in its own object's segment. The
shift of each segment starts at the lowest key any lookup into it will use (``reach``), and the
stride spans the widest segment's reach, so a lookup never lands in a neighbour's segment.

When the segments do not fit an int64 that way (objects a kilometre apart along x in one frame),
``fits`` is false and the caller goes object by object.
"""
from __future__ import annotations

from typing import List

import numpy as np

from .objects import RUN, RUN_STAGES, MemoryObject, add_and_insert, merged_positions

LIMIT = 1 << 62


class Segments:
    def __init__(self, objs: List[MemoryObject], reach_lo: np.ndarray, reach_hi: np.ndarray):
        """``objs`` (each with at least one voxel); ``reach_lo``/``reach_hi`` (S,): the lowest and highest key
        that a lookup or a merge into each will use."""
        self.objs = objs
        self.n = np.array([len(o.keys) for o in objs], np.int64)
        self.start = np.r_[0, np.cumsum(self.n)]
        self.keys = np.concatenate([o.keys for o in objs])
        lo = np.minimum(self.keys[self.start[:-1]], reach_lo)
        hi = np.maximum(self.keys[self.start[1:] - 1], reach_hi)
        stride = int((hi - lo).max()) + RUN + 1  # Python ints: the check itself cannot overflow
        self.fits = len(objs) * stride < LIMIT
        if self.fits:
            self.shift = lo - np.arange(len(objs), dtype=np.int64) * stride
            self.ordered = self.keys - np.repeat(self.shift, self.n)

    def next_to(self, seg: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """(Q,) segment of each probe voxel and (Q,) its key -> (Q,) bool: that object holds the voxel or one of
        its 26 neighbours (MemoryObject.next_to, for many objects in one search). A re-observed object holds
        most probes themselves, so those are looked up first, then the others by their own column's run, and
        only those still not found by the other eight runs."""
        q = keys - self.shift[seg]
        found = self.ordered.take(np.searchsorted(self.ordered, q), mode="clip") == q
        for offsets in RUN_STAGES:
            rest = np.flatnonzero(~found)
            if not len(rest):
                break
            r = q[rest][:, None] + offsets[None]
            v = self.ordered.take(np.searchsorted(self.ordered, r), mode="clip")
            found[rest] = ((v >= r) & (v <= r + RUN)).any(1)
        return found

    def merge(self, seg: np.ndarray, keys: np.ndarray, sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Add voxels to the objects (MemoryObject.merge_voxels for each): ``seg`` (U,) non-decreasing, ``keys``
        sorted and unique within each segment, at the objects' voxel size. Writes each touched object's new
        arrays (its own copies) and returns the touched segments."""
        pos, hit = merged_positions(self.ordered, keys - self.shift[seg])  # shifted, the keys are sorted too
        all_sums = np.concatenate([o.sums for o in self.objs])  # this frame's copies: added into in place
        all_w = np.concatenate([o.weights for o in self.objs])
        u_keys, u_sums, u_w = add_and_insert(self.keys, all_sums, all_w, pos, hit, keys, sums, weights)
        ustart = np.r_[0, np.cumsum(self.n + np.bincount(seg[~hit], minlength=len(self.objs)))]
        touched = seg[np.r_[True, seg[1:] != seg[:-1]]]  # seg is non-decreasing
        for s, a, b in zip(touched.tolist(), ustart[touched].tolist(), ustart[touched + 1].tolist()):
            o = self.objs[s]
            o.keys, o.sums, o.weights = u_keys[a:b].copy(), u_sums[a:b].copy(), u_w[a:b].copy()
            o.changed()
        return touched
