"""Rigid transforms, written once: points, poses and boxes from one frame into another.

A ``RigidTransform`` maps coordinates in a source frame to a target frame: p_target = R p_source + t,
which is what tf2 returns for ``lookup_transform(target, source, stamp)`` (its translation and
rotation are the source frame's origin and axes expressed in the target frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class RigidTransform:
    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    @classmethod
    def identity(cls) -> "RigidTransform":
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_quaternion(cls, xyzw: Sequence[float], translation: Sequence[float]) -> "RigidTransform":
        q = np.asarray(xyzw, dtype=np.float64)
        if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
            raise ValueError(f"not a rotation quaternion: {list(q)}")
        t = np.asarray(translation, dtype=np.float64)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise ValueError(f"translation must be 3 finite numbers, got {list(t)}")
        return cls(Rotation.from_quat(q / np.linalg.norm(q)).as_matrix(), t)

    def points(self, p: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        return np.asarray(p, dtype=np.float64) @ self.R.T + self.t

    def pose(self, position: np.ndarray, axes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """A pose given as position (3,) and orientation (3, 3) columns -> the same in the target frame."""
        return self.points(np.asarray(position)[None])[0], self.R @ np.asarray(axes, dtype=np.float64)

    def inverse(self) -> "RigidTransform":
        """The transform back: target coordinates -> source."""
        return RigidTransform(self.R.T, -self.R.T @ self.t)

    def then(self, other: "RigidTransform") -> "RigidTransform":
        """This transform followed by ``other``."""
        return RigidTransform(other.R @ self.R, other.R @ self.t + other.t)


def quaternion_xyzw(axes: np.ndarray) -> np.ndarray:
    """(3, 3) rotation (columns = axes) -> (x, y, z, w) unit quaternion, as geometry_msgs wants."""
    return Rotation.from_matrix(np.asarray(axes, dtype=np.float64)).as_quat()
