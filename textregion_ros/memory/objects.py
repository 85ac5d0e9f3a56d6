"""What the memory takes in (Detection, Observation) and what it keeps (MemoryObject).

An object's points are kept as voxels: per occupied voxel the sum and count of the points that
fell in it, so each stored point is the mean of its voxel's points (a face seen edge-on stays on
the face) and bounded memory does not move the surface. When an object holds more voxels than
``max_points`` its voxel side doubles and its voxels are binned again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from ..geometry.transform import RigidTransform

OFFSET = 1 << 20  # voxel indices are packed in 21 bits per axis: +-1M voxels (10 km at 1 cm)
NEIGHBOURS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], np.int64)


def voxel_keys(points: np.ndarray, size: float) -> np.ndarray:
    """(N, 3) metres -> (N,) int64 keys of their voxels."""
    ijk = np.floor(points / size).astype(np.int64) + OFFSET
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def key_indices(keys: np.ndarray) -> np.ndarray:
    mask = (1 << 21) - 1
    return np.stack([(keys >> 42) & mask, (keys >> 21) & mask, keys & mask], -1) - OFFSET


def pack(ijk: np.ndarray) -> np.ndarray:
    ijk = ijk + OFFSET
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def pack_rows(ijk: np.ndarray) -> np.ndarray:
    """pack() of (3, N) indices (contiguous rows: faster than columns)."""
    return (ijk[0] + OFFSET) << 42 | (ijk[1] + OFFSET) << 21 | (ijk[2] + OFFSET)


# A neighbour's key is the voxel's key plus a fixed offset: no axis leaves its 21 bits within +-1M voxels.
NEIGHBOUR_OFFSETS = (NEIGHBOURS[:, 0] << 42) + (NEIGHBOURS[:, 1] << 21) + NEIGHBOURS[:, 2]


def neighbour_keys(keys: np.ndarray) -> np.ndarray:
    """(K,) voxel keys -> (K, 27) keys of each voxel and its 26 neighbours."""
    return keys[:, None] + NEIGHBOUR_OFFSETS[None]


# The 27 neighbours are 9 runs of three consecutive keys (z - 1, z, z + 1 at one x, y): a run is found
# with one search for its first key instead of three.
RUN_OFFSETS = NEIGHBOUR_OFFSETS[::3]
RUN = 2  # a run's last key is its first plus RUN
# The run of a voxel's own column (x, y) first, then the other eight: a voxel of a re-observed surface that is
# not the object's is most often one step off along z.
RUN_STAGES = (RUN_OFFSETS[4:5], np.delete(RUN_OFFSETS, 4))


def neighbour_runs(keys: np.ndarray) -> np.ndarray:
    """(K,) voxel keys -> (K, 9) first keys of the runs that make up each voxel's 27 neighbours."""
    return keys[:, None] + RUN_OFFSETS[None]


def in_runs(sorted_keys: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """(K, 9) run starts -> (K,) bool: ``sorted_keys`` holds a key of one of the runs."""
    v = sorted_keys.take(np.searchsorted(sorted_keys, runs), mode="clip")
    return ((v >= runs) & (v <= runs + RUN)).any(1)


def bin_points(points: np.ndarray, weights: np.ndarray, size: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted points -> (sorted unique keys, per-key weighted sums (K, 3), per-key weights (K,))."""
    keys = voxel_keys(points, size)
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, summed(inv, points * weights[:, None], len(uniq)), np.bincount(inv, weights=weights,
                                                                              minlength=len(uniq))


def summed(inv: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(N, 3) values summed per group ``inv`` -> (n, 3); bincount per column (np.add.at is far slower)."""
    return np.stack([np.bincount(inv, weights=values[:, c], minlength=n) for c in range(3)], -1)


ROW = np.dtype((np.void, 24))  # one (x, y, z) float64 row as a single item


def rows(a: np.ndarray) -> np.ndarray:
    """(K, 3) float64 -> (K,) items sharing its memory: numpy gathers and scatters 1-D items several times
    faster than rows of a 2-D array."""
    return np.ascontiguousarray(a).view(ROW).reshape(len(a))


def _interleave(old: np.ndarray, new: np.ndarray, is_old: np.ndarray, at: np.ndarray) -> np.ndarray:
    out = np.empty((len(is_old),) + old.shape[1:], old.dtype)
    o, n, a = (rows(x) for x in (out, old, new)) if old.ndim == 2 else (out, old, new)
    o[is_old], o[at] = n, a
    return out


def add_and_insert(keys: np.ndarray, sums: np.ndarray, weights: np.ndarray, pos: np.ndarray, hit: np.ndarray,
                   k: np.ndarray, s: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels (k, s, w) into sorted ones (keys, sums, weights) at their ``searchsorted`` positions ``pos``
    (``hit``: already held). The held ones add in place into ``sums`` (C-contiguous) and ``weights`` (distinct
    rows: keys are unique); the others are inserted in key order. -> the union (the same arrays when every one
    was held)."""
    h = np.flatnonzero(hit)
    rows(sums)[pos[h]] = rows(sums.take(pos[h], axis=0) + s.take(h, axis=0))
    weights[pos[h]] += w[h]
    new = np.flatnonzero(~hit)
    if not len(new):  # every voxel seen before: the common case of an object in view
        return keys, sums, weights
    at = pos[new] + np.arange(len(new))  # the new voxels' rows in the union: shifted by those before them
    old = np.ones(len(keys) + len(at), bool)
    old[at] = False
    return (_interleave(keys, k[new], old, at), _interleave(sums, s.take(new, axis=0), old, at),
            _interleave(weights, w[new], old, at))


def merged_positions(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For sorted unique ``a`` and sorted ``b``: (np.searchsorted(a, b), whether each of b is in a). From one
    stable sort of the two laid end to end, which is a single merge of two runs (numpy's stable sort is a
    timsort): on this CPU a third of the time of the binary searches at 16,000 into 32,000."""
    if not len(a):
        return np.zeros(len(b), np.int64), np.zeros(len(b), bool)
    order = np.argsort(np.concatenate([a, b]), kind="stable")
    # b's items in the merged order, in b's own order (stable, b sorted); an equal item of a comes before it.
    after = np.flatnonzero(order >= len(a)) - np.arange(len(b))  # items of a before each of b
    hit = a.take(after - 1, mode="clip") == b
    hit &= after > 0
    return after - hit, hit


def percentiles(p: np.ndarray, lo: float, hi: float) -> Tuple[np.ndarray, np.ndarray]:
    """np.quantile(p, [lo, hi], axis=0) (its linear method), from one partial sort of the four ranks it reads."""
    pos = np.array([lo, hi]) * (len(p) - 1)
    below = np.floor(pos).astype(int)
    above = np.minimum(below + 1, len(p) - 1)
    part = np.partition(p, np.unique(np.r_[below, above]), axis=0)
    frac = (pos - below)[:, None]
    q = part[below] * (1 - frac) + part[above] * frac
    return q[0], q[1]


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices of [starts[i], starts[i] + lengths[i]) for every i, end to end."""
    at = np.r_[0, np.cumsum(lengths)[:-1]]
    return np.repeat(starts - at, lengths) + np.arange(int(np.sum(lengths)))


def evenly(n: np.ndarray, m: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For groups of ``n`` items, ``m`` (<= n) evenly spaced of each, first and last included: ((sum m,) index
    of each within its group, (G + 1,) where each group's picks start)."""
    first = np.r_[0, np.cumsum(m)]
    group = np.repeat(np.arange(len(n)), m)
    j = np.arange(first[-1]) - first[group]  # 0 .. m-1 within each group
    step = np.where(m > 1, (n - 1) / np.maximum(m - 1, 1), 0.0)
    return (j * step[group] + 1e-9).astype(np.int64), first  # + 1e-9: j * step lands on n - 1, not below it


@dataclass
class Detection:
    """One tracked region of a frame, with its depth points already in the memory frame."""
    token: np.ndarray  # (D,) unit norm
    points: np.ndarray  # (N, 3) in the memory frame, finite
    label: str = ""
    score: float = 0.0
    track_id: int = 0
    # Where it is in the image (x0, y0, x1, y1, exclusive max) and its mask's pixel count: a detection with too
    # few depth points to fuse is still matched by its footprint, so its object counts as seen (not missed).
    box: Optional[Tuple[int, int, int, int]] = None
    pixels: int = 0


@dataclass
class Observation:
    """One processed frame: the camera's pose in the memory frame and what it saw."""
    stamp_ns: int
    camera: str
    pose: RigidTransform  # camera optical frame -> memory frame, at the frame's stamp
    K: np.ndarray  # (3, 3)
    depth_m: Optional[np.ndarray]  # (H, W) metres, NaN or 0 = hole; for "should it be visible"
    detections: list = field(default_factory=list)


@dataclass
class MemoryObject:
    id: int
    token: np.ndarray  # (D,) running mean of its detections' tokens, unit norm
    voxel_size: float
    keys: np.ndarray  # (K,) sorted voxel keys
    sums: np.ndarray  # (K, 3)
    weights: np.ndarray  # (K,)
    label_votes: Dict[str, float] = field(default_factory=dict)  # label -> summed score
    observations: int = 1
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    first_frame: int = 0  # the memory's fused-frame count when first seen
    last_frame: int = 0
    camera: str = ""  # the camera that saw it last
    misses: int = 0  # frames in a row it should have been seen and was not
    apart: set = field(default_factory=set)  # ids of objects detected separately in one frame: never merged
    _box: Optional[Tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False)
    _hull: Optional[Tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False)
    _obox: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default=None, repr=False)

    @property
    def points(self) -> np.ndarray:
        return self.sums / self.weights[:, None]

    @property
    def label(self) -> str:
        return max(self.label_votes, key=self.label_votes.get) if self.label_votes else ""

    @property
    def label_score(self) -> float:
        return self.label_votes.get(self.label, 0.0) / max(self.observations, 1)

    def changed(self) -> None:
        self._box = self._obox = None

    def next_to(self, runs: np.ndarray) -> np.ndarray:
        """(K, 9) ``neighbour_runs`` of voxels at this object's size -> (K,) bool: the voxel or one of its 26
        neighbours is the object's."""
        if not len(self.keys):
            return np.zeros(len(runs), bool)
        return in_runs(self.keys, runs)

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box of its points from the 1st to the 99th percentile: flying pixels and depth noise
        at the silhouette do not stretch it, and on a flat face (a sixth of a box's points) it is exact."""
        if self._box is None:
            p = self.points
            self._box = percentiles(p, 0.01, 0.99) if len(p) > 1 else (p[0], p[0])
        return self._box

    def hull(self) -> Tuple[np.ndarray, np.ndarray]:
        """A box holding every voxel mean, so a test against it (which objects a detection might touch) misses
        nothing; the exact tests come after it. Kept as points arrive: a voxel's mean only moves towards the
        points added to it, and coarsened means average old ones, so the union of the old box and the new
        points' box still holds them all. Cheaper per frame than bounds()."""
        if self._hull is None:
            p = self.points
            self._hull = (p.min(0), p.max(0)) if len(p) else (np.full(3, np.inf), np.full(3, -np.inf))
        return self._hull

    @property
    def centroid(self) -> np.ndarray:
        """The centre of its box: the surfaces seen bound it on every side, where a mean of surface points
        would lean towards the sides seen most (a bottom is never seen)."""
        lo, hi = self.bounds()
        return (lo + hi) / 2

    def oriented_box(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, axes (3, 3) columns, size): z is the memory frame's z (REP-103: up), x and y the principal
        directions of the points across it. Kept until the points change: the memory outputs read it for
        every object on each publication."""
        if self._obox is None:
            self._obox = self._oriented_box()
        return self._obox

    def _oriented_box(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.points
        xy = p[:, :2] - p[:, :2].mean(0)
        if len(p) >= 3 and np.isfinite(xy).all():
            _, vecs = np.linalg.eigh(xy.T @ xy)
            x = vecs[:, -1]
        else:
            x = np.array([1.0, 0.0])
        axes = np.array([[x[0], -x[1], 0.0], [x[1], x[0], 0.0], [0.0, 0.0, 1.0]])
        local = p @ axes
        lo, hi = np.percentile(local, 1, axis=0), np.percentile(local, 99, axis=0)
        return axes @ ((lo + hi) / 2), axes, hi - lo

    def add_points(self, points: np.ndarray, weights: np.ndarray, max_points: int) -> None:
        """Weighted points (another object's, when merging): binned at this object's size and merged."""
        if len(points):
            self.grow_hull(points.min(0), points.max(0))
        self.merge_voxels(*bin_points(points, weights, self.voxel_size))
        self.coarsen(max_points)

    def take_voxels(self, size: float, keys: np.ndarray, sums: np.ndarray, weights: np.ndarray) -> None:
        """Voxels binned at ``size`` (a frame's detections are binned once, together): merged as they are at
        this object's size, their means binned again at a coarsened object's."""
        if size == self.voxel_size:
            self.merge_voxels(keys, sums, weights)
        else:
            self.merge_voxels(*bin_points(sums / weights[:, None], weights, self.voxel_size))

    def grow_hull(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """The hull now also holds the box ``lo``..``hi`` (of points being added)."""
        old_lo, old_hi = self.hull()
        self.set_hull(np.minimum(old_lo, lo), np.maximum(old_hi, hi))

    def set_hull(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """A hull the caller computed (the old one grown by the points being added, for many objects at once)."""
        self._hull = (lo, hi)

    def coarsen(self, max_points: int) -> None:
        """While it holds more than ``max_points`` voxels: twice the side, the voxels' means binned again."""
        while len(self.keys) > max_points:
            self.voxel_size *= 2.0
            self.keys, self.sums, self.weights = bin_points(self.points, self.weights, self.voxel_size)
        self.changed()

    def merge_voxels(self, keys: np.ndarray, sums: np.ndarray, weights: np.ndarray) -> None:
        """Add voxels (sorted unique keys at this object's size): a sorted merge, no sort of the union. Few
        numpy calls on purpose: at 64 regions a frame, per-call overhead is most of the cost."""
        n = len(self.keys)
        self.changed()
        if not n:
            self.keys, self.sums, self.weights = keys.copy(), sums.copy(), weights.copy()
            return
        self.sums = np.ascontiguousarray(self.sums)  # added into in place
        pos = np.searchsorted(self.keys, keys)
        hit = self.keys.take(pos, mode="clip") == keys
        self.keys, self.sums, self.weights = add_and_insert(self.keys, self.sums, self.weights, pos, hit, keys, sums,
                                                            weights)

    def add_token(self, token: np.ndarray, n: int = 1) -> None:
        t = self.token * self.observations + token * n
        self.token = (t / max(np.linalg.norm(t), 1e-12)).astype(np.float32)
