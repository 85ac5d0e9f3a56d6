"""Target lock: once a query is found, its track is the target until something clearly beats it.

Per frame, for one query, given every region's probability of being the query and its track id:
* no target yet: the best region is reported; when it is found (prob >= abstain) and its track is
  confirmed, that track becomes the target and the result is ``locked``;
* a target whose track is in the frame is reported, even when another region scores a little
  higher. Another track takes over only when it beats the target by ``margin`` on ``frames``
  consecutive frames (the same challenger each time);
* a target whose track is missing from this frame (occluded, missed by the mask source) is not
  reported: the frame is grounded afresh and unlocked, and the target comes back with its track.
  When the tracker drops the track, the lock is cleared and the query is grounded afresh;
* a new query, or an empty one, clears the lock.
While locked, ``found`` stays true: the object was found and its identity is held, so a planner
does not lose it on one blurred frame; ``prob`` is still this frame's score.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..knobs import TRACKS, knob
from ..results import Grounding

@dataclass
class LockConfig:
    """Rows of the knob table (knobs.py); the node declares each as lock_<name>."""
    margin: float = knob(0.1, "score by which another track must beat a query's locked target to take over",
                         range=(0.0, 1.0), runtime=True, consumer=TRACKS)
    frames: int = knob(3, "consecutive frames another track must win by lock_margin to take over", range=(1, 1000),
                       runtime=True, consumer=TRACKS)


@dataclass
class TargetLock:
    margin: float = LockConfig.margin
    frames: int = LockConfig.frames
    query: str = ""
    target: int = 0  # track id; 0 = none
    challenger: int = 0
    challenges: int = 0

    def clear(self) -> None:
        self.target = self.challenger = self.challenges = 0

    def update(self, g: Grounding, probs: np.ndarray, cosines: np.ndarray, track_ids: np.ndarray,
               is_alive: Callable[[int], bool]) -> Grounding:
        """This frame's grounding of the query, with the lock applied.

        ``g`` is the plain (best-region) grounding; ``probs``/``cosines`` are every region's, (R,);
        ``track_ids`` (R,) uint32 with 0 for unconfirmed regions.
        """
        if g.query != self.query:
            self.query = g.query
            self.clear()
        if self.target and not is_alive(self.target):
            self.clear()
        if not g.query or len(probs) == 0:
            return g
        where = np.flatnonzero(track_ids == self.target) if self.target else np.zeros(0, np.int64)
        if not self.target or not len(where):
            if not self.target and g.found and 0 <= g.region < len(track_ids) and track_ids[g.region]:
                self.target = int(track_ids[g.region])
                return replace(g, track_id=self.target, locked=True)
            tid = int(track_ids[g.region]) if 0 <= g.region < len(track_ids) else 0
            return replace(g, track_id=tid, locked=False)
        i = int(where[0])
        # The strongest rival with an identity, judged against the target on this frame.
        rivals = np.where((track_ids != 0) & (track_ids != self.target), probs, -np.inf)
        j = int(np.argmax(rivals)) if len(rivals) else -1
        if j >= 0 and np.isfinite(rivals[j]) and rivals[j] > probs[i] + self.margin:
            rival = int(track_ids[j])
            self.challenges = self.challenges + 1 if rival == self.challenger else 1
            self.challenger = rival
            if self.challenges >= self.frames:
                self.target, i = rival, j
                self.challenger = self.challenges = 0
        else:
            self.challenger = self.challenges = 0
        others = np.delete(probs, i)
        margin = float(probs[i] - max(float(others.max()), 0.0)) if len(others) else float(probs[i])
        return Grounding(g.query, i, float(probs[i]), float(cosines[i]), margin, True,
                         track_id=self.target, locked=True)


class TargetLocks:
    """One lock per query text (standing queries and the active one); locks of dropped queries go."""

    def __init__(self, margin: float = 0.1, frames: int = 3):
        self.margin, self.frames = margin, frames
        self.locks: Dict[str, TargetLock] = {}

    def configure(self, margin: float, frames: int) -> None:
        self.margin, self.frames = margin, frames
        for lock in self.locks.values():
            lock.margin, lock.frames = margin, frames

    def reset(self) -> None:
        self.locks.clear()

    def update(self, groundings: Sequence[Grounding], probs: np.ndarray, cosines: np.ndarray,
               track_ids: np.ndarray, is_alive: Callable[[int], bool]) -> List[Grounding]:
        """``probs``/``cosines``: (R, Q) for the Q groundings, in order."""
        queries = [g.query for g in groundings]
        for q in list(self.locks):
            if q not in queries:
                del self.locks[q]
        out = []
        for k, g in enumerate(groundings):
            lock = self.locks.setdefault(g.query, TargetLock(self.margin, self.frames, g.query))
            out.append(lock.update(g, probs[:, k], cosines[:, k], track_ids, is_alive))
        return out

    def target(self, query: str) -> Optional[int]:
        lock = self.locks.get(query)
        return lock.target if lock and lock.target else None
