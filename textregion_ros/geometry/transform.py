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


IDENTITY = np.eye(3)


def quaternion_xyzw(axes: np.ndarray) -> np.ndarray:
    """(3, 3) rotation (columns = axes) -> (x, y, z, w) unit quaternion, as geometry_msgs wants.

    A proper rotation takes Shepperd's closed form, about 20x cheaper than scipy's Rotation, which the memory's
    messages paid per object (a thousand objects' first publication: 0.24 s); anything else (a reflection,
    axes that are not orthonormal) goes to scipy, which finds the nearest rotation."""
    m = np.asarray(axes, dtype=np.float64)
    if m.shape != (3, 3) or float(np.abs(m.T @ m - IDENTITY).max()) > 1e-6:
        return Rotation.from_matrix(m).as_quat()
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    if a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) < 0:  # a reflection
        return Rotation.from_matrix(m).as_quat()
    trace = a + e + i
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = ((h - f) / s, (c - g) / s, (d - b) / s, 0.25 * s)
    elif a > e and a > i:
        s = 2.0 * np.sqrt(1.0 + a - e - i)
        q = (0.25 * s, (b + d) / s, (c + g) / s, (h - f) / s)
    elif e > i:
        s = 2.0 * np.sqrt(1.0 + e - a - i)
        q = ((b + d) / s, 0.25 * s, (f + h) / s, (c - g) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + i - a - e)
        q = ((c + g) / s, (f + h) / s, 0.25 * s, (d - b) / s)
    q = np.array(q)
    return q / np.linalg.norm(q)
