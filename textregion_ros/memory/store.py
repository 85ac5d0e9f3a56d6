"""ObjectMemory: fuses each frame's detections into remembered objects, in the memory frame.

Per frame (``integrate``):
1. Association. A detection and an object can match when their 3D overlap (the share of the
   detection's voxels next to the object's, at the object's voxel size) and their token cosine
   both pass their gates; the score ``w * overlap + (1 - w) * cosine`` of the gated pairs goes to
   scipy's Hungarian solver (``linear_sum_assignment``), one assignment per frame.
2. Matched objects take the detection's points and token (a running mean, unit norm); the others
   start new objects.
3. Objects that should have been seen and were not (inside the image, with valid depth that is not
   in front of them) count a miss; ``miss_frames`` misses in a row remove them, because things move.
4. Objects that reached fewer than ``min_observations`` within ``noise_frames`` are dropped as
   noise; every ``merge_every`` frames duplicates (overlap and cosine both high) are merged; beyond
   ``max_objects`` the least recently seen are evicted. Each of these is counted.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .associate import Association, associate, overlap
from .faults import PART_CELL, by_footprint, clean, join_split, own_share
from .config import MemoryConfig
from .frame_voxels import FrameVoxels, bin_frame
from .objects import Detection, MemoryObject, Observation, bin_points, evenly, ranges
from .table import ObjectTable, touching_pairs

MERGE_REACH = 0.3  # m: objects of one class this close in one frame are marked seen apart (a contaminated
# object grows towards its neighbour; pairs farther apart than this are not worth a mark)
VISIBILITY_SAMPLES = 32  # points per object checked against the depth image
MIN_IN_VIEW = 0.5  # share of those inside the image (and in front of the camera) for "should be visible"


class ObjectMemory:
    def __init__(self, config: Optional[MemoryConfig] = None):
        self.config = config or MemoryConfig()
        self.config.validate()
        self.objects: Dict[int, MemoryObject] = {}
        self.next_id = 1
        self.frames = 0  # frames fused
        self.counts: Counter = Counter()
        self.table = ObjectTable()
        self._young: set = set()  # ids of objects below min_observations (candidates for noise)
        self._young_for = -1  # the min_observations that _young was computed for

    def __len__(self) -> int:
        return len(self.objects)

    # --- one frame ---
    def integrate(self, obs: Observation) -> List[int]:
        """Fuse one frame -> the object id of each detection (0 = not fused and no object recognised)."""
        self.frames += 1
        self.counts["frames"] += 1
        cfg = self.config
        points = clean([bounded(d.points, cfg.max_detection_points) for d in obs.detections], obs.pose.t)
        kept = [k for k, p in enumerate(points) if len(p) >= cfg.min_points]
        self.counts["detections_without_points"] += len(obs.detections) - len(kept)
        out = [0] * len(obs.detections)
        seen: set = set()
        if kept:
            units = self._units(obs, kept, points)
            for members, obj in zip(units[0], self._fuse_units(obs, *units)):
                if obj is not None:
                    seen.add(obj.id)
                    for k in members:
                        out[k] = obj.id
        for k in set(range(len(obs.detections))) - set(kept):
            obj = self._recognise(obs.detections[k], points[k], obs)
            if obj is not None:
                seen.add(obj.id)
                out[k] = obj.id
        self._misses(obs, seen)
        self._drop_noise()
        if cfg.merge_every and self.frames % cfg.merge_every == 0:
            self.merge_duplicates()
        self._evict()
        return out

    def _units(self, obs: Observation, kept: List[int], points: List[np.ndarray]):
        """The frame's detections as fused: split masks of one object (faults.join_split) joined. -> (member
        indices per unit, (U, D) tokens, points per unit, the Detection whose label and score each keeps)."""
        tokens = np.stack([obs.detections[k].token for k in kept]).astype(np.float32)
        groups = join_split([points[k] for k in kept], tokens, self.config.merge_cosine)
        members = [[kept[i] for i in g] for g in groups]
        if len(groups) == len(kept):  # nothing joined (the usual frame)
            return members, tokens, [points[k] for k in kept], [obs.detections[k] for k in kept]
        self.counts["joined_split"] += sum(len(g) - 1 for g in groups)
        unit_tokens = np.stack([tokens[g].sum(0) for g in groups])
        unit_tokens /= np.maximum(np.linalg.norm(unit_tokens, axis=1, keepdims=True), 1e-12)
        unit_points = [np.concatenate([points[k] for k in m]) if len(m) > 1 else points[m[0]] for m in members]
        lead = [obs.detections[max(m, key=lambda k: len(points[k]))] for m in members]
        return members, unit_tokens, unit_points, lead

    def _fuse_units(self, obs: Observation, members, tokens, points, lead) -> List[Optional[MemoryObject]]:
        """Associate, keep each unit's own share (faults.own_share), fuse; -> each unit's object (or None)."""
        cfg = self.config
        vox = bin_frame(points, cfg.voxel_size)
        dlo, dhi = vox.bounds()
        found = associate(self.objects, self.table, cfg, tokens, vox, dlo, dhi)
        shares = self._shares(found, points, dlo, dhi)
        changed = {i for i, sh in enumerate(shares) if sh is not None}  # rare: merged masks, foreign points
        if changed:
            points = [p if sh is None else p[sh] for p, sh in zip(points, shares)]
            self.counts["points_not_theirs"] += sum(int((~sh).sum()) for sh in shares if sh is not None)
        fusable = [len(p) >= cfg.min_points for p in points]
        whole = {i: o for i, o in found.matches.items() if i not in changed}
        if whole:  # the frame's voxels as binned, merged in one pass
            self._update(Association(whole, found.segments), lead, tokens, obs, vox, dlo, dhi)
        redo = sorted(i for i in found.matches if i in changed and fusable[i])
        if redo:  # what is left of detections that gave up points, binned again
            v2 = bin_frame([points[i] for i in redo], cfg.voxel_size)
            self._update(Association({j: found.matches[i] for j, i in enumerate(redo)}, None), [lead[i] for i in redo],
                         tokens[redo], obs, v2, *v2.bounds())
        objs: List[Optional[MemoryObject]] = [found.matches.get(i) for i in range(len(points))]
        for i, p in enumerate(points):
            if objs[i] is None and fusable[i]:
                objs[i] = self._new(Detection(tokens[i], p, lead[i].label, lead[i].score), obs,
                                    vox.of(i) if i not in changed else None)
            elif objs[i] is not None and not fusable[i]:  # all of it lay on other objects: seen, nothing fused
                self._seen(objs[i], obs)
        self._seen_apart([o for o in objs if o is not None], tokens[[i for i, o in enumerate(objs) if o is not None]])
        return objs

    def _shares(self, found: Association, points: List[np.ndarray], dlo: np.ndarray, dhi: np.ndarray
                ) -> List[Optional[np.ndarray]]:
        """Per unit: None (every point is its own) or the mask of points its object takes (faults.own_share)."""
        lo, hi, ids = self.table.lo, self.table.hi, self.table.ids
        pi, pj = found.touching if found.touching is not None else (np.zeros(0, np.int64),) * 2
        own = np.full(len(points), -1, np.int64)  # each matched detection's own row
        det_of = np.array(sorted(found.matches), np.int64)
        inside = np.ones(len(points), bool)  # within its object's reach (unmatched: nothing to leave)
        if len(det_of):
            own[det_of] = rows = self.table.rows([found.matches[int(i)] for i in det_of])
            inside[det_of] = ((dlo[det_of] >= lo[rows] - PART_CELL) & (dhi[det_of] <= hi[rows] + PART_CELL)).all(1)
        other = pj != own[pi]
        pi, pj = pi[other], pj[other]
        out: List[Optional[np.ndarray]] = [None] * len(points)
        for i in np.union1d(pi, np.flatnonzero(~inside)):
            others = [self.objects[int(ids[r])] for r in pj[pi == i]]
            keep = own_share(points[i], found.matches.get(int(i)), others)
            out[i] = None if keep.all() else keep
        return out

    def _seen_apart(self, objs: List[MemoryObject], tokens: np.ndarray) -> None:
        """Objects of different detections in one frame are two things: never merged as duplicates. Only pairs
        that could merge are marked (one class, near): one class touching in one frame was joined as a split."""
        if len(objs) < 2:
            return
        alike = np.triu(tokens @ tokens.T >= self.config.merge_cosine, 1)
        if not alike.any():  # the usual frame: no two of one class
            return
        hulls = np.array([o.hull() for o in objs])
        lo, hi = hulls[:, 0] - MERGE_REACH, hulls[:, 1] + MERGE_REACH
        near = (lo[:, None] <= hi[None]).all(2) & (lo[None] <= hi[:, None]).all(2) & alike
        for a, b in zip(*np.nonzero(near)):  # upper triangle: ``alike`` is
            if objs[a] is not objs[b]:
                objs[a].apart.add(objs[b].id)
                objs[b].apart.add(objs[a].id)

    def _recognise(self, det: Detection, points: np.ndarray, obs: Observation) -> Optional[MemoryObject]:
        """A detection too small to fuse, matched by its footprint (faults.by_footprint) or by the few points it
        has: its object counts as seen this frame instead of missed."""
        ids, tokens = self.table.ids, self.table.tokens
        if not len(ids):
            return None
        rows = np.flatnonzero((ids >= 0) & (tokens @ det.token >= self.config.min_cosine))
        objs = [self.objects[int(ids[r])] for r in rows]
        obj = by_footprint(det.box, det.token, objs, obs.pose, obs.K, self.config.min_cosine)
        if obj is None and len(points):
            centre = np.median(points, axis=0)
            near = [o for o in objs if (np.abs(o.centroid - centre) <= (o.bounds()[1] - o.bounds()[0]) / 2 + 0.05).all()]
            obj = max(near, key=lambda o: float(o.token @ det.token), default=None)
        if obj is None:
            return None
        self._seen(obj, obs)
        self.counts["seen_by_footprint"] += 1
        return obj

    def _seen(self, obj: MemoryObject, obs: Observation) -> None:
        """Seen in this frame without points fused into it: no miss, and last seen now, by this camera."""
        obj.misses, obj.last_seen_ns, obj.last_frame, obj.camera = 0, obs.stamp_ns, self.frames, obs.camera

    def _new(self, det: Detection, obs: Observation, binned=None) -> MemoryObject:
        """A new object from a detection; ``binned`` is its (keys, sums, weights) at the base voxel size."""
        keys, sums, w = binned if binned is not None else bin_points(det.points, np.ones(len(det.points)),
                                                                      self.config.voxel_size)
        obj = MemoryObject(self.next_id, det.token.astype(np.float32), self.config.voxel_size, keys.copy(),
                           sums.copy(), w.copy(),  # its own arrays: merges add into them in place
                           {det.label: float(det.score)} if det.label else {}, 1, obs.stamp_ns, obs.stamp_ns,
                           self.frames, self.frames, obs.camera)
        obj.coarsen(self.config.max_points)  # the bound holds from the start
        self.objects[obj.id] = obj
        self._young.add(obj.id)
        self.table.put(obj)
        self.next_id += 1
        self.counts["created"] += 1
        return obj

    def _update(self, found: Association, dets: List[Detection], tokens: np.ndarray, obs: Observation,
                vox: FrameVoxels, dlo: np.ndarray, dhi: np.ndarray) -> None:
        """The matched objects take their detections' voxels, tokens and labels. Those in ``found.segments``
        merge in one pass; the others (coarsened) one by one."""
        if not found.matches:
            return
        cfg = self.config
        det_of = np.array(sorted(found.matches))
        objs = [found.matches[i] for i in det_of]
        segs = found.segments
        seg_of = {o.id: s for s, o in enumerate(segs.objs)} if segs is not None else {}
        batch = sorted((seg_of[o.id], i) for i, o in zip(det_of, objs) if o.id in seg_of)
        if batch:
            seg, det = np.array(batch).T
            n = vox.start[det + 1] - vox.start[det]
            idx = ranges(vox.start[det], n)
            segs.merge(np.repeat(seg, n), vox.keys[idx], vox.sums.take(idx, axis=0), vox.weights[idx])
        for i, obj in zip(det_of, objs):
            if obj.id not in seg_of:
                obj.take_voxels(vox.size, *vox.of(i))
        hulls = np.array([o.hull() for o in objs])  # (n, 2, 3), grown by the detections' boxes
        hulls[:, 0] = np.minimum(hulls[:, 0], dlo[det_of])
        hulls[:, 1] = np.maximum(hulls[:, 1], dhi[det_of])
        rows = self.table.rows(objs)
        # The table holds each object's token (put() copies it): one gather instead of stacking 64 arrays.
        t = self.table.tokens[rows] * np.array([o.observations for o in objs], np.float64)[:, None] + tokens[det_of]
        t = (t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        # The hulls' rows are views of one copy of 48 bytes per object, which is all an object can keep alive;
        # a token is its own copy, as a view would keep this frame's (n, D) tokens alive as long as the object.
        lows, highs = hulls[:, 0].copy(), hulls[:, 1].copy()
        for k, (i, obj) in enumerate(zip(det_of.tolist(), objs)):
            obj.set_hull(lows[k], highs[k])
            obj.token = t[k].copy()
            if len(obj.keys) > cfg.max_points:  # (merging already called changed())
                obj.coarsen(cfg.max_points)
            det = dets[i]
            if det.label:
                obj.label_votes[det.label] = obj.label_votes.get(det.label, 0.0) + float(det.score)
            obj.observations += 1
            obj.last_seen_ns, obj.last_frame, obj.camera, obj.misses = obs.stamp_ns, self.frames, obs.camera, 0
        self.table.put_many(rows, objs, hulls, t)
        self.counts["matched"] += len(objs)

    # --- what should have been seen ---
    def _misses(self, obs: Observation, seen: set) -> None:
        if obs.depth_m is None or not self.objects:
            return
        ids, lo, hi = self.table.ids, self.table.lo, self.table.hi
        # Only objects whose box centre projects into the image in front of the camera are looked at.
        with np.errstate(invalid="ignore"):  # dead rows (inf, -inf) give NaN centres, which project nowhere
            cam = obs.pose.inverse().points((lo + hi) / 2)
        h, w = obs.depth_m.shape
        z = np.where(cam[:, 2] > 0.05, cam[:, 2], np.inf)
        u, v = obs.K[0, 0] * cam[:, 0] / z + obs.K[0, 2], obs.K[1, 1] * cam[:, 1] / z + obs.K[1, 2]
        candidates = np.nonzero(np.isfinite(z) & (u >= 0) & (u < w) & (v >= 0) & (v < h))[0]
        objs = [self.objects[int(ids[j])] for j in candidates]
        objs = [o for o in objs if o.id not in seen]
        removed = []
        for obj, visible in zip(objs, self.should_see(objs, obs)):
            if not visible:
                continue
            obj.misses += 1
            if obj.misses >= self.config.miss_frames:
                removed.append(obj.id)
        self._delete(removed)
        self.counts["removed_unseen"] += len(removed)

    def _delete(self, ids) -> None:
        for oid in ids:
            del self.objects[oid]
            self.table.remove(oid)

    def should_see(self, objs: List[MemoryObject], obs: Observation) -> np.ndarray:
        """(len(objs),) bool: inside the image and not hidden, the depth measured there not in front of the
        object; from up to VISIBILITY_SAMPLES of each object's points (evenly spaced), all projected at once."""
        if not objs:
            return np.zeros(0, bool)
        n = np.array([len(o.keys) for o in objs])
        m = np.minimum(n, VISIBILITY_SAMPLES)
        within, first = evenly(n, m)
        rows = np.repeat(np.r_[0, np.cumsum(n)[:-1]], m) + within
        p = np.concatenate([o.sums for o in objs]).take(rows, axis=0) / \
            np.concatenate([o.weights for o in objs])[rows, None]
        start = first[:-1]
        cam = obs.pose.inverse().points(p)
        h, w = obs.depth_m.shape
        z = cam[:, 2]
        front = z > 0.05
        zs = np.where(front, z, 1)
        u = np.where(front, obs.K[0, 0] * cam[:, 0] / zs + obs.K[0, 2], -1)
        v = np.where(front, obs.K[1, 1] * cam[:, 1] / zs + obs.K[1, 2], -1)
        inside = front & (u >= 0) & (u < w - 0.5) & (v >= 0) & (v < h - 0.5)
        d = np.full(len(p), np.nan)
        d[inside] = obs.depth_m[np.rint(v[inside]).astype(int), np.rint(u[inside]).astype(int)]
        valid = inside & np.isfinite(d) & (d > 0)
        with np.errstate(invalid="ignore"):
            behind = valid & (d >= z - self.config.depth_tolerance)
        n_in, n_valid, n_behind = (np.add.reduceat(x.astype(np.int64), start) for x in (inside, valid, behind))
        return (n_in >= MIN_IN_VIEW * m) & (n_valid >= MIN_IN_VIEW * n_in) & (n_behind >= MIN_IN_VIEW * n_valid) & \
            (n_valid > 0)

    # --- housekeeping ---
    def _drop_noise(self) -> None:
        """Objects still short of min_observations (the young: a few, not all N) that are out of time."""
        cfg = self.config
        if self._young_for != cfg.min_observations:  # the knob changed: who is young changed with it
            self._young = {o.id for o in self.objects.values() if o.observations < cfg.min_observations}
            self._young_for = cfg.min_observations
        self._young = {i for i in self._young if i in self.objects and
                       self.objects[i].observations < cfg.min_observations}
        noise = [i for i in self._young if self.frames - self.objects[i].first_frame >= cfg.noise_frames]
        self._delete(noise)
        self._young.difference_update(noise)
        self.counts["dropped_noise"] += len(noise)

    def _evict(self) -> None:
        extra = len(self.objects) - self.config.max_objects
        if extra <= 0:
            return
        self._delete([o.id for o in sorted(self.objects.values(), key=lambda o: (o.last_seen_ns, o.id))[:extra]])
        self.counts["evicted"] += extra

    def merge_duplicates(self) -> int:
        """Merge every pair whose overlap and cosine pass the merge gates (the smaller into the larger). Only
        pairs whose boxes overlap are compared (table.touching_pairs), and their tokens only then."""
        cfg, merged = self.config, 0
        t = self.table
        # ids copied: a merge below removes rows, and the table may compact under the loop.
        ids, tokens = t.ids.copy(), t.tokens
        pairs = touching_pairs(t.lo, t.hi, np.flatnonzero(ids >= 0))  # live rows only, without compacting
        pairs = pairs[np.einsum("ij,ij->i", tokens[pairs[:, 0]], tokens[pairs[:, 1]]) >= cfg.merge_cosine]
        for a, b in pairs:
            oa, ob = self.objects.get(int(ids[a])), self.objects.get(int(ids[b]))
            if oa is None or ob is None:
                continue  # merged into another already
            if ob.id in oa.apart:  # detected as two things in one frame: not duplicates
                continue
            big, small = (oa, ob) if len(oa.keys) >= len(ob.keys) else (ob, oa)
            if overlap(small.points, big) >= cfg.merge_overlap:
                self._absorb(big, small)
                merged += 1
        self.counts["merged"] += merged
        return merged

    def _absorb(self, big: MemoryObject, small: MemoryObject) -> None:
        big.add_points(small.points, small.weights, self.config.max_points)
        big.add_token(small.token, small.observations)
        for k, v in small.label_votes.items():
            big.label_votes[k] = big.label_votes.get(k, 0.0) + v
        big.observations += small.observations
        big.first_seen_ns = min(big.first_seen_ns, small.first_seen_ns)
        big.first_frame = min(big.first_frame, small.first_frame)
        if small.last_seen_ns > big.last_seen_ns:
            big.last_seen_ns, big.camera = small.last_seen_ns, small.camera
        big.last_frame = max(big.last_frame, small.last_frame)
        big.apart |= small.apart
        self.table.put(big)
        self._delete([small.id])

    def replace(self, objects: List[MemoryObject], next_id: int, frames: int) -> None:
        """Everything at once (a loaded file)."""
        self.objects = {o.id: o for o in objects}
        self.next_id, self.frames, self._young_for = next_id, frames, -1
        self.table = ObjectTable()
        for o in objects:
            self.table.put(o)

    def clear(self) -> None:
        self.objects.clear()
        self.table = ObjectTable()
        self.counts["cleared"] += 1

    # --- queries ---
    def tokens(self) -> Tuple[np.ndarray, np.ndarray]:
        """(row ids, (N, D) tokens) in one order, for scoring against text: the table itself, no copy. A removed
        object's row (id -1, a zero token) stays until the table compacts; rank() skips it. Compacting here
        would copy every token (20 MB at 10,000 objects) after each frame that removed one."""
        return self.table.ids, self.table.tokens

    def rank(self, ids: Sequence[int], probs: np.ndarray, cosines: np.ndarray, limit: int = 10
             ) -> List[Tuple[MemoryObject, float, float]]:
        """The ``limit`` objects of highest probability, best first (ties: the most recently seen first). Rows
        with id -1 (removed objects, see tokens()) are skipped."""
        ids = np.asarray(ids)
        probs = np.where(ids >= 0, probs, -np.inf)
        live = int((ids >= 0).sum())
        if not live:
            return []
        cand = np.flatnonzero(ids >= 0)
        if live > limit:  # everything at or above the limit-th probability, ties included, then the exact order
            cand = np.flatnonzero(probs >= np.partition(probs, len(ids) - limit)[len(ids) - limit])
        last = np.array([self.objects[int(ids[i])].last_seen_ns for i in cand])
        top = cand[np.lexsort((-last, -probs[cand]))][:limit]
        return [(self.objects[int(ids[i])], float(probs[i]), float(cosines[i])) for i in top]


def bounded(points: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the points, every n-th in their order (depth points come in raster order, so
    this thins the region evenly rather than cropping it)."""
    return points if len(points) <= limit else points[::-(-len(points) // limit)]
