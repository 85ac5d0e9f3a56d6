"""Every object's id, padded box and token as arrays, kept in step with the objects row by row.

Association, visibility and merging test a frame against every object at once; rebuilding these
arrays from the objects each frame would cost more than the tests themselves at thousands of
objects. A changed object rewrites its row, a new one appends a row, a removed one leaves a dead
row (an empty box, a zero token) until dead rows are a quarter of the table, which is then compacted.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .objects import MemoryObject


class ObjectTable:
    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)  # -1 = a dead row
        self.lo = np.zeros((0, 3))
        self.hi = np.zeros((0, 3))
        self.tokens = np.zeros((0, 0), np.float32)
        self.row: Dict[int, int] = {}
        self.dead = 0

    def put(self, o: MemoryObject) -> None:
        lo, hi = o.bounds()
        pad = 2 * o.voxel_size
        r = self.row.get(o.id)
        if r is None:
            if self.tokens.shape[1] != o.token.shape[0]:
                self.tokens = np.zeros((len(self.ids), o.token.shape[0]), np.float32)
            self.ids = np.append(self.ids, o.id)
            self.lo, self.hi = np.vstack([self.lo, lo - pad]), np.vstack([self.hi, hi + pad])
            self.tokens = np.vstack([self.tokens, o.token[None]])
            self.row[o.id] = len(self.ids) - 1
        else:
            self.lo[r], self.hi[r], self.tokens[r] = lo - pad, hi + pad, o.token

    def remove(self, oid: int) -> None:
        r = self.row.pop(oid, None)
        if r is None:
            return
        self.ids[r], self.lo[r], self.hi[r], self.tokens[r] = -1, np.inf, -np.inf, 0.0
        self.dead += 1
        if self.dead * 4 > len(self.ids):
            self.compact()

    def compact(self) -> None:
        keep = self.ids >= 0
        self.ids, self.lo, self.hi, self.tokens = self.ids[keep], self.lo[keep], self.hi[keep], self.tokens[keep]
        self.row = {int(i): r for r, i in enumerate(self.ids)}
        self.dead = 0

    def live(self) -> Tuple[List[int], np.ndarray]:
        """(ids, tokens) of the live rows only."""
        if self.dead:
            self.compact()
        return [int(i) for i in self.ids], self.tokens
