"""Every object's id, padded hull box (objects.hull) and token as arrays, kept in step with the objects row by row.

Association, visibility and merging test a frame against every object at once; rebuilding these
arrays from the objects each frame would cost more than the tests themselves at thousands of
objects. A changed object rewrites its row; a new one takes the next row (the arrays double when
full, so appending is amortised O(1) instead of a copy of the whole table); a removed one leaves a
dead row (an empty box, a zero token) until dead rows are a quarter of the table, which is then
compacted.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
from scipy.spatial import cKDTree

from .objects import MemoryObject

LARGE_APART = 32  # at most this many large boxes are compared one by one (touching_pairs)


class ObjectTable:
    def __init__(self) -> None:
        self.n = 0  # rows in use (live and dead)
        self._ids = np.zeros(0, np.int64)  # -1 = a dead row
        self._lo = np.zeros((0, 3))
        self._hi = np.zeros((0, 3))
        self._tokens = np.zeros((0, 0), np.float32)
        self.row: Dict[int, int] = {}
        self.dead = 0

    ids = property(lambda self: self._ids[:self.n])
    lo = property(lambda self: self._lo[:self.n])
    hi = property(lambda self: self._hi[:self.n])
    tokens = property(lambda self: self._tokens[:self.n])

    def _grow(self, dim: int) -> None:
        cap = max(16, 2 * len(self._ids))
        grown = [np.full(cap, -1, np.int64), np.full((cap, 3), np.inf), np.full((cap, 3), -np.inf),
                 np.zeros((cap, dim), np.float32)]
        for new, old in zip(grown, (self._ids, self._lo, self._hi, self._tokens)):
            if old.shape[-1:] == new.shape[-1:] or old.ndim == 1:
                new[:self.n] = old[:self.n]
        self._ids, self._lo, self._hi, self._tokens = grown

    def put(self, o: MemoryObject) -> None:
        lo, hi = o.hull()
        pad = 2 * o.voxel_size
        r = self.row.get(o.id)
        if r is None:
            if self.n == len(self._ids) or self._tokens.shape[1] != o.token.shape[0]:
                self._grow(o.token.shape[0])
            r, self.n = self.n, self.n + 1
            self._ids[r] = o.id
            self.row[o.id] = r
        self._lo[r], self._hi[r], self._tokens[r] = lo - pad, hi + pad, o.token

    def rows(self, objs) -> np.ndarray:
        """The rows of objects in the table."""
        return np.array([self.row[o.id] for o in objs], np.int64)

    def put_many(self, r: np.ndarray, objs, hulls: np.ndarray, tokens: np.ndarray) -> None:
        """put() for objects already in the table at rows ``r`` (rows()), written at once: ``hulls`` (n, 2, 3)
        and ``tokens`` (n, D) are theirs."""
        pad = 2 * np.array([o.voxel_size for o in objs])[:, None]
        self._lo[r], self._hi[r] = hulls[:, 0] - pad, hulls[:, 1] + pad
        self._tokens[r] = tokens

    def remove(self, oid: int) -> None:
        r = self.row.pop(oid, None)
        if r is None:
            return
        self._ids[r], self._lo[r], self._hi[r], self._tokens[r] = -1, np.inf, -np.inf, 0.0
        self.dead += 1
        if self.dead * 4 > self.n:
            self.compact()

    def compact(self) -> None:
        if not self.dead:  # nothing to drop: copying every token (20 MB at 10,000 objects) would change nothing
            return
        keep = np.flatnonzero(self.ids >= 0)
        k = len(keep)
        for a in (self._ids, self._lo, self._hi, self._tokens):
            a[:k] = a[keep]
        self._ids[k:self.n], self._lo[k:self.n], self._hi[k:self.n], self._tokens[k:self.n] = -1, np.inf, -np.inf, 0
        self.n, self.dead = k, 0
        self.row = {int(i): r for r, i in enumerate(self.ids)}


def touching_pairs(lo: np.ndarray, hi: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(P, 2) the pairs among ``rows`` (row a < row b) whose boxes [lo, hi] overlap, in row order.

    Boxes that overlap have centres within half their two diagonals. A k-d tree over the centres finds the
    candidates, with the largest diagonal as its reach; a few boxes more than twice the median's diagonal (a
    table SAM2 gave whole, a wall) are left out of it and compared with every box directly. With them in it,
    one large object in a map of 1,000 would make hundreds of thousands of pairs candidates."""
    if len(rows) < 2:
        return np.zeros((0, 2), np.int64)
    blo, bhi = lo[rows], hi[rows]
    diag = np.linalg.norm(bhi - blo, axis=1)
    is_large = diag > 2 * np.median(diag)
    if is_large.sum() > LARGE_APART:
        is_large[:] = False  # large boxes are common here: one reach for all
    small, large = np.flatnonzero(~is_large), np.flatnonzero(is_large)
    found = [np.zeros((0, 2), np.int64)]
    if len(small) > 1:
        tree = cKDTree((blo[small] + bhi[small]) / 2)
        found.append(small[tree.query_pairs(float(diag[small].max()), output_type="ndarray")].reshape(-1, 2))
    for i in large:
        hit = np.flatnonzero(((blo[i] <= bhi) & (blo <= bhi[i])).all(1))
        hit = hit[(hit != i) & (~is_large[hit] | (hit > i))]  # a pair of two large boxes once
        found.append(np.stack([np.full(len(hit), i), hit], 1))
    pairs = np.sort(np.concatenate(found), axis=1)
    pairs = rows[pairs[((blo[pairs[:, 0]] <= bhi[pairs[:, 1]]) & (blo[pairs[:, 1]] <= bhi[pairs[:, 0]])).all(1)]]
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
