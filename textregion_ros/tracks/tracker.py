"""Region tracks: stable identities for a frame's regions over time. No ROS here.

    tracker = Tracker(TrackerConfig())
    update = tracker.update(result)          # after Pipeline.process, frames in order
    update.track_ids                         # (R,) uint32, 0 while a track is unconfirmed

Association (one frame):
* every live track predicts its mask by shifting its last mask by its velocity (constant-velocity
  motion, one batched gather), on a coarse association grid on the device; the overlap
  of a region with a track is the better of its IoU with the predicted and with the last mask, or
  half the share of the region inside the predicted mask grown by ``max_motion_px`` (an occluded
  object shows a sliver, and its motion while hidden is unknown);
* the similarity of region r and track t is ``w * IoU(mask_r, predicted_t) + (1 - w) * cos(token_r,
  token_t)``; pairs whose IoU is below ``min_iou`` cannot match, since two identical mugs have the
  same token and only overlap tells them apart;
* the (R, T) cost ``1 - similarity`` goes to the host once, and ``scipy.optimize.linear_sum_assignment``
  solves it; assigned pairs below ``min_similarity`` are refused.
Unmatched regions start tentative tracks; a track is confirmed after ``confirm_hits`` matches
(its id is 0 until then, so one-frame SAM2 flicker never takes an id) and dies after ``max_misses``
frames without a match. A region that returns after its track died gets a new id.

Smoothing: each track keeps an exponential moving average of its **tokens** (L2-normalised after
each step), and labels and groundings are computed from that average. Averaging tokens rather than
class probabilities keeps the track in the text embedding space, the same way TextRegion averages
views within a frame, so a vocabulary or query that changes mid-track is scored on the averaged
token at once, with no per-label history to rebuild.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..knobs import TRACKS, check, knob
from ..masks.base import dilate
from ..results import FrameResult

# Cost of a pair that may not match; large but finite, as linear_sum_assignment needs.
INFEASIBLE = 1e6
# A matched region below this share of its track's mask area counts as occluded (see update()).
OCCLUDED_AREA_RATIO = 0.7

@dataclass
class TrackerConfig:
    """Rows of the knob table (knobs.py); the node declares each as track_<name>."""
    iou_weight: float = knob(0.7, "share of mask overlap in the region-to-track similarity (the rest is token "
                             "cosine)", range=(0.0, 1.0), runtime=True, consumer=TRACKS)
    min_iou: float = knob(0.05, "mask overlap a region needs with a track's predicted mask to continue it",
                          range=(0.0, 1.0), runtime=True, consumer=TRACKS)
    min_similarity: float = knob(0.3, "blended similarity a region needs to continue a track", range=(0.0, 1.0),
                                 runtime=True, consumer=TRACKS)
    confirm_hits: int = knob(2, "matches before a track gets its id (track_id is 0 until then)", range=(1, 100),
                             runtime=True, consumer=TRACKS)
    max_misses: int = knob(10, "frames without a match before a track is dropped", range=(0, 1000), runtime=True,
                           consumer=TRACKS)
    token_smoothing: float = knob(0.5, "weight of a track's past in its token average (0 = this frame only)",
                                  range=(0.0, 0.99), runtime=True, consumer=TRACKS)
    grid: int = knob(96, "long side of the association grid in cells", range=(8, 512), runtime=True,
                     consumer=TRACKS)
    max_motion_px: float = knob(24.0, "how far a partly hidden object may move per frame, in pixels",
                                range=(0.0, 1000.0), runtime=True, consumer=TRACKS)

    def validate(self) -> None:
        check(self, "tracker ")


@dataclass
class TrackUpdate:
    track_ids: np.ndarray  # (R,) uint32 per region of the frame; 0 = tentative (not yet confirmed)
    tokens: torch.Tensor  # (R, E) the regions' smoothed tokens, L2-normalised, on the device


def association_grid(frame_hw: Tuple[int, int], long_side: int) -> Tuple[int, int]:
    h, w = frame_hw
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def grid_masks(result: FrameResult, grid_hw: Tuple[int, int]) -> torch.Tensor:
    """(R, gh, gw) float 0/1: each region's mask (probability >= 0.5) on the association grid."""
    m = result.masks.masks
    if len(m) == 0:
        return m.new_zeros((0, *grid_hw), dtype=torch.float32)
    up = F.interpolate(m[:, None].float(), size=grid_hw, mode="bilinear", align_corners=False)[:, 0]
    return (up > 0 if result.masks.is_logits else up >= 0.5).float()


def centroids(masks: torch.Tensor) -> torch.Tensor:
    """(N, gh, gw) 0/1 -> (N, 2) xy centroid in cells (the grid's middle for empty masks)."""
    n, gh, gw = masks.shape
    ys = torch.arange(gh, device=masks.device, dtype=torch.float32)
    xs = torch.arange(gw, device=masks.device, dtype=torch.float32)
    area = masks.sum((1, 2)).clamp_min(1e-6)
    cx = (masks.sum(1) * xs).sum(1) / area
    cy = (masks.sum(2) * ys).sum(1) / area
    empty = masks.sum((1, 2)) == 0
    c = torch.stack([cx, cy], 1)
    return torch.where(empty[:, None], torch.tensor([gw / 2.0, gh / 2.0], device=masks.device), c)


def shift_masks(masks: torch.Tensor, shift_xy: torch.Tensor) -> torch.Tensor:
    """Translate each (gh, gw) mask by its own (dx, dy), rounded to whole cells, zero-filled (one gather)."""
    n, gh, gw = masks.shape
    if n == 0:
        return masks
    d = shift_xy.round().long()
    ys = torch.arange(gh, device=masks.device)[None, :] - d[:, 1:2]  # (n, gh) source rows
    xs = torch.arange(gw, device=masks.device)[None, :] - d[:, 0:1]  # (n, gw) source columns
    valid = ((ys >= 0) & (ys < gh))[:, :, None] & ((xs >= 0) & (xs < gw))[:, None, :]
    t = torch.arange(n, device=masks.device)[:, None, None]
    out = masks[t, ys.clamp(0, gh - 1)[:, :, None], xs.clamp(0, gw - 1)[:, None, :]]
    return out * valid


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(R, gh, gw) x (T, gh, gw) 0/1 -> (R, T) IoU, one matmul."""
    fa, fb = a.flatten(1), b.flatten(1)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-6), torch.zeros_like(inter))


def coverage(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(R, gh, gw) x (T, gh, gw) 0/1 -> (R, T) share of each region a inside each mask b."""
    fa, fb = a.flatten(1), b.flatten(1)
    return (fa @ fb.T) / fa.sum(1)[:, None].clamp_min(1e-6)


class Tracker:
    """Live tracks as tensors on the device (masks, tokens, motion) plus small host bookkeeping."""

    def __init__(self, config: Optional[TrackerConfig] = None):
        self.config = config or TrackerConfig()
        self.config.validate()
        self.reset()

    def reset(self) -> None:
        self._grid_hw: Optional[Tuple[int, int]] = None
        self.masks: Optional[torch.Tensor] = None  # (T, gh, gw)
        self.tokens: Optional[torch.Tensor] = None  # (T, E) smoothed
        self.centre: Optional[torch.Tensor] = None  # (T, 2) cells
        self.velocity: Optional[torch.Tensor] = None  # (T, 2) cells per frame
        self.ids = np.zeros(0, np.uint32)  # permanent ids, given at birth, published once confirmed
        self.hits = np.zeros(0, np.int64)
        self.misses = np.zeros(0, np.int64)
        # Ids are never reused, not even after a reset: a planner may still hold an old one.
        self._next_id = getattr(self, "_next_id", 1)

    def __len__(self) -> int:
        return len(self.ids)

    def confirmed_ids(self) -> np.ndarray:
        return self.ids[self.hits >= self.config.confirm_hits]

    def is_alive(self, track_id: int) -> bool:
        return bool(track_id) and bool(np.any(self.ids == track_id))

    def update(self, result: FrameResult) -> TrackUpdate:
        cfg = self.config
        grid_hw = association_grid(result.frame_hw, cfg.grid)
        if grid_hw != self._grid_hw:  # a new camera size: old tracks cannot be compared
            self.reset()
            self._grid_hw = grid_hw
        dev = result.tokens.device
        masks = grid_masks(result, grid_hw).to(dev)
        tokens = F.normalize(result.tokens.float(), dim=-1)
        centre = centroids(masks)
        r, t = masks.shape[0], len(self)
        rows, cols, predicted = self._associate(masks, tokens, grid_hw, result.frame_hw[1])
        smoothed = tokens.clone()
        region_tid = np.zeros(r, np.uint32)
        region_tid[rows] = self.ids[cols]
        if len(rows):
            smoothed[torch.as_tensor(rows, device=dev)] = self._follow(rows, cols, masks, tokens, centre, predicted)
        unmatched_tracks = np.setdiff1d(np.arange(t), cols)
        self.misses[unmatched_tracks] += 1
        # Births: every region left over starts a tentative track.
        born = np.setdiff1d(np.arange(r), rows)
        if len(born):
            bi = torch.as_tensor(born, device=dev)
            new_ids = np.arange(self._next_id, self._next_id + len(born), dtype=np.uint32)
            self._next_id += len(born)
            self._append(masks[bi], tokens[bi], centre[bi], new_ids)
        # Deaths: too many misses.
        alive = self.misses <= cfg.max_misses
        if not alive.all():
            self._select(alive)
        # Ids per region, published once their track is confirmed (tracks born now have one hit).
        if len(born):
            region_tid[born] = new_ids
        out_ids = np.where(np.isin(region_tid, self.confirmed_ids()), region_tid, 0).astype(np.uint32)
        return TrackUpdate(out_ids, smoothed)

    def _associate(self, masks: torch.Tensor, tokens: torch.Tensor, grid_hw: Tuple[int, int], frame_w: int):
        """Regions to tracks by one assignment -> (region rows, track cols, the tracks' predicted masks)."""
        cfg, empty = self.config, np.zeros(0, np.int64)
        if not (masks.shape[0] and len(self)):
            return empty, empty, None
        dev = masks.device
        reach = math.ceil(cfg.max_motion_px * grid_hw[1] / frame_w)
        coast = torch.as_tensor(self.misses + 1, device=dev, dtype=torch.float32)[:, None]
        predicted = shift_masks(self.masks, self.velocity * coast)
        # The better of the predicted and the last mask: a bounce or a sudden stop breaks the
        # constant-velocity guess, and the last mask still overlaps then.
        # A mostly occluded object shows a sliver: what counts then is that the sliver lies
        # inside the track's predicted footprint (coverage), at half weight so that a whole
        # region's IoU with its own track wins over a sliver's claim.
        iou = torch.maximum(mask_iou(masks, predicted), mask_iou(masks, self.masks))
        iou = torch.maximum(iou, 0.5 * coverage(masks, dilate(torch.maximum(predicted, self.masks), reach)))
        sim = cfg.iou_weight * iou + (1.0 - cfg.iou_weight) * (tokens @ self.tokens.T).clamp_min(0.0)
        ok = (iou >= cfg.min_iou) & (sim >= cfg.min_similarity)
        cost = torch.where(ok, 1.0 - sim, torch.full_like(sim, INFEASIBLE)).cpu().numpy()  # one host copy
        rows, cols = linear_sum_assignment(cost)
        keep = cost[rows, cols] < INFEASIBLE
        return rows[keep], cols[keep], predicted

    def _follow(self, rows, cols, masks, tokens, centre, predicted) -> torch.Tensor:
        """Matched tracks take their regions' observations -> the matched regions' smoothed tokens."""
        dev = masks.device
        ri, ti = torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)
        a = self.config.token_smoothing
        new_tok = F.normalize(a * self.tokens[ti] + (1.0 - a) * tokens[ri], dim=-1)
        steps = torch.as_tensor(self.misses[cols] + 1, device=dev, dtype=torch.float32)[:, None]
        # A region much smaller than its track's mask is mostly occluded (or cut by the border):
        # its visible part's centroid says little about motion, so the track coasts on its
        # predicted mask and velocity; otherwise the observation replaces both.
        old_area = self.masks[ti].sum((1, 2))
        whole = masks[ri].sum((1, 2)) >= OCCLUDED_AREA_RATIO * old_area
        v_now = (centre[ri] - self.centre[ti]) / steps
        coast_v = self.velocity[ti]
        self.velocity[ti] = torch.where(whole[:, None], 0.5 * v_now + 0.5 * coast_v, coast_v)
        self.centre[ti] = torch.where(whole[:, None], centre[ri], self.centre[ti] + coast_v * steps)
        self.masks[ti] = torch.where(whole[:, None, None], masks[ri], predicted[ti])
        self.tokens[ti] = new_tok
        self.hits[cols] += 1
        self.misses[cols] = 0
        return new_tok

    def _append(self, masks, tokens, centre, ids) -> None:
        n = len(ids)
        vel = torch.zeros((n, 2), device=masks.device)
        if self.masks is None:
            self.masks, self.tokens, self.centre, self.velocity = masks, tokens, centre, vel
            self.ids, self.hits, self.misses = ids, np.ones(n, np.int64), np.zeros(n, np.int64)
            return
        self.masks = torch.cat([self.masks, masks])
        self.tokens = torch.cat([self.tokens, tokens])
        self.centre = torch.cat([self.centre, centre])
        self.velocity = torch.cat([self.velocity, vel])
        self.ids = np.concatenate([self.ids, ids])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int64)])
        self.misses = np.concatenate([self.misses, np.zeros(n, np.int64)])

    def _select(self, keep: np.ndarray) -> None:
        k = torch.as_tensor(keep, device=self.masks.device)
        self.masks, self.tokens = self.masks[k], self.tokens[k]
        self.centre, self.velocity = self.centre[k], self.velocity[k]
        self.ids, self.hits, self.misses = self.ids[keep], self.hits[keep], self.misses[keep]
