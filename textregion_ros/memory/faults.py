"""What a segmenter and a depth camera get wrong, handled before and after association (store.py).

- ``clean``: a detection's depth points without flying pixels (edge pixels whose depth lies between the
  object and what is behind it) and range outliers: Tukey fences on the range from the camera, widened by
  the depth noise expected at that range (sigma = 0.0015 z^2 m, a RealSense's), so a far object's noise
  does not cut its own surface.
- ``join_split``: two detections of one frame with one class (cosine >= merge_cosine) whose voxels touch
  are one object that the segmenter split: they are fused as one.
- ``own_share``: a detection gives its object only what lies on it. Its points next to another remembered
  object and not to its own are dropped (a merged mask's share of the neighbour), and so are the connected
  parts of it that touch neither its object nor any other (the unremembered half of a merged mask).
- ``by_footprint``: a detection with too few depth points to fuse still names its object when the object's
  centre projects inside its box and their tokens agree, so the object counts as seen, not missed.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .objects import MemoryObject, in_runs, neighbour_runs, voxel_keys

NOISE_PER_M2 = 0.0015  # depth noise sigma per metre squared of range (RealSense D4xx class)
QUARTILE_SAMPLES = 33  # ranges per detection its quartiles are read from
FENCE = 1.5  # Tukey's fences on range: beyond the quartiles by this many interquartile ranges
PART_CELL = 0.02  # m: the grid a detection's connected parts are found on
# m: the grid on which two detections "touch". Coarser than a voxel: a far object's points are centimetres
# apart (stride 2 at 4 m: 1.3 cm) and the two halves of a split mask must still touch along their cut; two
# objects a few centimetres apart (mugs 15 cm apart: 7 cm) do not.
TOUCH_CELL = 0.02
# Share of the smaller detection's cells next to the other's for "touching": a cut is a long seam, where a
# few flying pixels bridging two neighbours are a handful of cells.
TOUCH_SHARE = 0.08
MAX_PART_CELLS = 400_000  # a detection spread over more cells is not split into parts (bounded cost)


def clean(points: List[np.ndarray], eye: np.ndarray) -> List[np.ndarray]:
    """Each detection's points without range outliers (flying pixels, noise far off the surface), seen from
    ``eye``. Each detection's quartiles are read from QUARTILE_SAMPLES of its ranges, evenly spaced in raster
    order, all detections in one (D, QUARTILE_SAMPLES) sort: fences need no exact quartile."""
    counts = np.array([len(p) for p in points], np.int64)
    if not len(points) or counts.max() < 8:
        return points
    flat = np.concatenate(points)
    d = flat - eye
    r2 = np.einsum("ij,ij->i", d, d)  # squared ranges: the fences are squared instead of every range rooted
    first = np.cumsum(counts) - counts
    pick = first[:, None] + (np.arange(QUARTILE_SAMPLES) * np.maximum(counts - 1, 0)[:, None]) // (QUARTILE_SAMPLES - 1)
    sample = np.sqrt(np.sort(r2[np.minimum(pick, len(r2) - 1)], axis=1))
    q1, med, q3 = (sample[:, k] for k in (QUARTILE_SAMPLES // 4, QUARTILE_SAMPLES // 2, 3 * QUARTILE_SAMPLES // 4))
    slack = FENCE * (q3 - q1) + 3.0 * NOISE_PER_M2 * med * med
    low, high = np.maximum(q1 - slack, 0.0) ** 2, (q3 + slack) ** 2
    low[counts < 8], high[counts < 8] = 0.0, np.inf
    keep = (r2 >= np.repeat(low, counts)) & (r2 <= np.repeat(high, counts))
    if keep.all():
        return points
    parts = np.split(keep, np.cumsum(counts)[:-1])
    return [p if k.all() else p[k] for p, k in zip(points, parts)]


def boxes(points: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(D, 3) lowest and highest point of each detection (each has one), in two reductions."""
    counts = np.array([len(p) for p in points], np.int64)
    flat = np.concatenate(points).T
    at = np.cumsum(counts) - counts
    return np.minimum.reduceat(flat, at, axis=1).T, np.maximum.reduceat(flat, at, axis=1).T


def spacing(points: np.ndarray) -> float:
    """About how far apart a detection's points lie on its surface: a big region thinned to
    max_detection_points is sparse (a table's 512 points: 4 cm), and touching is judged on that scale."""
    ext = np.sort(points.max(0) - points.min(0))
    return float(np.sqrt(ext[1] * ext[2] / max(len(points), 1)))


def join_split(points: List[np.ndarray], tokens: np.ndarray, cosine: float) -> List[List[int]]:
    """Groups of detection indices to fuse as one: same class and touching (a split mask)."""
    n = len(points)
    parent = list(range(n))
    if n < 2:
        return [[0]] if n else []
    cos = tokens @ tokens.T
    np.fill_diagonal(cos, -1.0)
    if not (cos >= cosine).any():
        return [[i] for i in range(n)]
    lo, hi = boxes(points)
    lo, hi = lo - TOUCH_CELL, hi + TOUCH_CELL
    near = (lo[:, None] <= hi[None]).all(2) & (lo[None] <= hi[:, None]).all(2) & (cos >= cosine)
    pairs = np.nonzero(np.triu(near, 1))
    cell = {i: max(TOUCH_CELL, 1.5 * spacing(points[i])) for i in np.unique(np.concatenate(pairs))}
    keys: dict = {}  # (detection, cell size) -> its sorted voxel keys: a cluttered frame has many pairs per detection
    for a, b in zip(*pairs):
        ra, rb = _root(parent, a), _root(parent, b)
        if ra == rb:  # already one group through others: joining is transitive, the check would change nothing
            continue
        size = max(cell[a], cell[b])
        ka, kb = (_keys(keys, points, i, size) for i in (a, b))
        small, big = (ka, kb) if len(ka) <= len(kb) else (kb, ka)
        if in_runs(big, neighbour_runs(small)).sum() >= max(3, TOUCH_SHARE * len(small)):
            parent[rb] = ra
    groups: dict = {}
    for i in range(n):
        groups.setdefault(_root(parent, i), []).append(i)
    return list(groups.values())


def _keys(cache: dict, points: List[np.ndarray], i: int, size: float) -> np.ndarray:
    k = cache.get((i, size))
    if k is None:
        k = cache[(i, size)] = np.unique(voxel_keys(points[i], size))
    return k


def _root(parent: List[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def on(obj: MemoryObject, points: np.ndarray) -> np.ndarray:
    """(N,) bool: each point's voxel (at the object's size) is the object's or next to one of them."""
    return obj.next_to(neighbour_runs(voxel_keys(points, obj.voxel_size)))


def within(obj: MemoryObject, points: np.ndarray, margin: float = 0.01) -> np.ndarray:
    """(N,) bool: on the object and inside its box (bounds(), 1st to 99th percentile). A coarsened object's
    voxels are centimetres wide, and their neighbourhood alone would claim a mug standing on a table."""
    lo, hi = obj.bounds()
    inside = ((points >= lo - margin) & (points <= hi + margin)).all(1)
    if inside.any():
        inside[inside] = on(obj, points[inside])
    return inside


def own_share(points: np.ndarray, mine: Optional[MemoryObject], others: Sequence[MemoryObject]) -> np.ndarray:
    """(N,) bool: the points ``mine`` should take of a detection (``mine`` None: a new object). ``others``:
    remembered objects whose boxes touch the detection's."""
    mine_mask = on(mine, points) if mine is not None else np.zeros(len(points), bool)
    foreign = np.zeros(len(points), bool)
    for other in others:
        foreign |= within(other, points)
    keep = ~foreign | mine_mask
    if mine is None or keep.all() and mine_mask.all():
        return keep
    part = parts(points)
    if part is None:
        return keep
    touching = np.unique(part[mine_mask & keep])
    return keep & np.isin(part, touching) if len(touching) else keep


def parts(points: np.ndarray) -> Optional[np.ndarray]:
    """(N,) connected part of each point on a grid of PART_CELL or the points' spacing (26-neighbours), or None
    when too spread out."""
    ijk = np.floor(points / max(PART_CELL, 1.5 * spacing(points))).astype(np.int64)
    ijk -= ijk.min(0)
    shape = ijk.max(0) + 1
    if int(np.prod(shape)) > MAX_PART_CELLS:
        return None
    grid = np.zeros(shape, bool)
    grid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    labels, _ = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    return labels[ijk[:, 0], ijk[:, 1], ijk[:, 2]]


def by_footprint(box, token: np.ndarray, objs: Sequence[MemoryObject], pose, K, min_cosine: float
                 ) -> Optional[MemoryObject]:
    """The object a small detection shows: its centre projects inside the box, best cosine above the gate."""
    if box is None or not len(objs):
        return None
    centres = np.array([o.centroid for o in objs])
    cam = pose.inverse().points(centres)
    z = np.where(cam[:, 2] > 0.05, cam[:, 2], np.nan)
    with np.errstate(invalid="ignore"):
        u, v = K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]
        inside = (u >= box[0]) & (u < box[2]) & (v >= box[1]) & (v < box[3])
    cos = np.array([float(o.token @ token) for o in objs])
    cos = np.where(inside, cos, -np.inf)
    best = int(np.argmax(cos))
    return objs[best] if cos[best] >= min_cosine else None
