"""The object memory's knobs: rows of the knob table (knobs.py); the node declares each as memory_<name>."""
from __future__ import annotations

from dataclasses import dataclass

from ..knobs import MEMORY, check, knob


@dataclass
class MemoryConfig:
    voxel_size: float = knob(0.01, "voxel side (m) for an object's points and for 3D overlap",
                             range=(0.002, 0.5), runtime=True, consumer=MEMORY)
    max_points: int = knob(4000, "points kept per object; beyond it the object's voxels coarsen",
                           range=(16, 100000), runtime=True, consumer=MEMORY)
    max_objects: int = knob(2000, "objects remembered; beyond it the least recently seen is evicted (counted)",
                            range=(1, 1000000), runtime=True, consumer=MEMORY)
    min_overlap: float = knob(0.15, "share of a detection's voxels next to an object's for them to match",
                              range=(0.0, 1.0), runtime=True, consumer=MEMORY)
    min_cosine: float = knob(0.6, "token cosine a detection needs with an object to match it",
                             range=(-1.0, 1.0), runtime=True, consumer=MEMORY)
    overlap_weight: float = knob(0.5, "share of 3D overlap in the match score (the rest is token cosine)",
                                 range=(0.0, 1.0), runtime=True, consumer=MEMORY)
    merge_every: int = knob(10, "frames between merges of duplicate objects (0 = never)",
                            range=(0, 100000), runtime=True, consumer=MEMORY)
    merge_overlap: float = knob(0.3, "3D overlap (of the smaller object) for two objects to merge",
                                range=(0.0, 1.0), runtime=True, consumer=MEMORY)
    merge_cosine: float = knob(0.8, "token cosine for two objects to merge", range=(-1.0, 1.0), runtime=True,
                               consumer=MEMORY)
    min_observations: int = knob(3, "observations an object needs within noise_frames of its first, or it is "
                                 "dropped as noise", range=(1, 1000), runtime=True, consumer=MEMORY)
    noise_frames: int = knob(20, "fused frames an object has to reach min_observations", range=(1, 100000),
                             runtime=True, consumer=MEMORY)
    miss_frames: int = knob(6, "frames an object is expected in view (inside the image, in front of valid "
                            "depth) yet not detected before it is removed: things move", range=(1, 100000),
                            runtime=True, consumer=MEMORY)
    depth_tolerance: float = knob(0.05, "how far (m) in front of an object the measured depth may be for the "
                                  "object to count as hidden rather than missing", range=(0.0, 10.0),
                                  runtime=True, consumer=MEMORY)
    max_detection_points: int = knob(512, "depth points of a detection fused per frame, evenly subsampled "
                                     "beyond: the cost of a frame stays bounded whatever the image size",
                                     range=(16, 1000000), runtime=True, consumer=MEMORY)
    min_points: int = knob(20, "valid depth points a detection needs to be fused", range=(1, 100000),
                           runtime=True, consumer=MEMORY)

    def validate(self) -> None:
        check(self, "memory ")
