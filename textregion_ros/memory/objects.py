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


def neighbour_keys(keys: np.ndarray) -> np.ndarray:
    """(K,) voxel keys -> (K, 27) keys of each voxel and its 26 neighbours."""
    return pack((key_indices(keys)[:, None, :] + NEIGHBOURS[None]).reshape(-1, 3)).reshape(len(keys), 27)


def bin_points(points: np.ndarray, weights: np.ndarray, size: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted points -> (sorted unique keys, per-key weighted sums (K, 3), per-key weights (K,))."""
    keys = voxel_keys(points, size)
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, summed(inv, points * weights[:, None], len(uniq)), np.bincount(inv, weights=weights,
                                                                              minlength=len(uniq))


def summed(inv: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(N, 3) values summed per group ``inv`` -> (n, 3); bincount per column (np.add.at is far slower)."""
    return np.stack([np.bincount(inv, weights=values[:, c], minlength=n) for c in range(3)], -1)


@dataclass
class Detection:
    """One tracked region of a frame, with its depth points already in the memory frame."""
    token: np.ndarray  # (D,) unit norm
    points: np.ndarray  # (N, 3) in the memory frame, finite
    label: str = ""
    score: float = 0.0
    track_id: int = 0


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
    _box: Optional[Tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False)

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
        self._box = None

    def next_to(self, nb: np.ndarray) -> np.ndarray:
        """(K, 27) keys of voxels and their neighbours (``neighbour_keys``) at this object's size -> (K,) bool:
        the voxel or one of its 26 neighbours is the object's."""
        if not len(self.keys):
            return np.zeros(len(nb), bool)
        pos = np.minimum(np.searchsorted(self.keys, nb), len(self.keys) - 1)
        return (self.keys[pos] == nb).any(1)

    def bounds(self) -> Tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box of its points from the 1st to the 99th percentile: flying pixels and depth noise
        at the silhouette do not stretch it, and on a flat face (a sixth of a box's points) it is exact."""
        if self._box is None:
            p = self.points
            self._box = tuple(np.quantile(p, [0.01, 0.99], axis=0)) if len(p) > 1 else (p[0], p[0])
        return self._box

    @property
    def centroid(self) -> np.ndarray:
        """The centre of its box: the surfaces seen bound it on every side, where a mean of surface points
        would lean towards the sides seen most (a bottom is never seen)."""
        lo, hi = self.bounds()
        return (lo + hi) / 2

    def oriented_box(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, axes (3, 3) columns, size): z is the memory frame's z (REP-103: up), x and y the principal
        directions of the points across it."""
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

    def add_points(self, points: np.ndarray, weights: np.ndarray, max_points: int, binned=None) -> None:
        """``binned``: (keys, sums, weights) of these points at ``binned_size``, reused when that is this object's
        voxel size (a detection is binned once per frame)."""
        keys, sums, w = binned[1:] if binned is not None and binned[0] == self.voxel_size else \
            bin_points(points, weights, self.voxel_size)
        allk = np.concatenate([self.keys, keys])
        uniq, inv = np.unique(allk, return_inverse=True)
        self.keys, self.sums = uniq, summed(inv, np.concatenate([self.sums, sums]), len(uniq))
        self.weights = np.bincount(inv, weights=np.concatenate([self.weights, w]), minlength=len(uniq))
        while len(self.keys) > max_points:  # coarsen: twice the side, the voxels' means binned again
            self.voxel_size *= 2.0
            means = self.points
            self.keys, s, self.weights = bin_points(means, self.weights, self.voxel_size)
            self.sums = s
        self.changed()

    def add_token(self, token: np.ndarray, n: int = 1) -> None:
        t = self.token * self.observations + token * n
        self.token = (t / max(np.linalg.norm(t), 1e-12)).astype(np.float32)
