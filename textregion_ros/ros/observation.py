"""The ``observation`` topic: one full frame as the object memory needs it, from the perception node to
textregion_memory (memory_node.py), over DDS, so the memory's Python runs in a process of its own.

Built (observation_msg) from a composed frame: per non-background region its token, label, score, track id,
box, pixel count and a bounded sample of its depth points in the camera's optical frame, with the image's
header, K and a subsampled depth image. Read back (memory_frame) into the MemoryFrame the memory stage fuses.
Refusals (another encoder, sizes that do not add up) are ObservationError with a reason for bad_input/*.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

import textregion_ros.msg as trmsg

from ..memory.store import bounded
from .convert import ImageError, array_to_image, depth_to_meters, packed, stamp_ns

DEPTH_STEP = 4  # the depth image sent for visibility checks: 160x120 of a 640x480 camera (77 KB)
MAX_REGIONS = 1024  # a sender that claims more is refused (a frame's regions are bounded by max_masks)


@dataclass
class MemoryFrame:
    header: Any
    stamp_ns: int
    tokens: np.ndarray  # (R, D) the regions' (tracked) tokens
    labels: List[str]  # per region
    scores: np.ndarray  # (R,)
    background: np.ndarray  # (R,) bool: labelled as background
    track_ids: np.ndarray
    instance: Optional[np.ndarray]  # (H, W) uint16 region + 1
    depth: Any  # sensor_msgs/Image or None
    K: Optional[np.ndarray]
    query: str
    # From an observation (observation.py): each region's optical-frame points, and the depth image (metres)
    # that K projects into; instance and depth are then None.
    points: Optional[Dict[int, np.ndarray]] = None
    depth_m: Optional[np.ndarray] = None
    boxes: Optional[np.ndarray] = None  # (R, 4) x0 y0 x1 y1 in the image K projects into: a region too small
    pixels: Optional[np.ndarray] = None  # to fuse still names its object by its footprint (memory/faults.py)


class ObservationError(ValueError):
    def __init__(self, reason: str, text: str):
        super().__init__(text)
        self.reason = reason


def encoder_id(config) -> str:
    """What tokens are comparable with: the encoder and its weights (random weights are never comparable)."""
    return f"{config.encoder_model}|{config.encoder_weights}" + ("|random" if config.random_weights else "")


def region_points(instance: np.ndarray, depth_m: np.ndarray, K: np.ndarray, stride: int) -> Dict[int, np.ndarray]:
    """Region index -> (N, 3) optical-frame points of its pixels with valid depth (every ``stride``-th pixel)."""
    ids = instance[::stride, ::stride].astype(np.int64) - 1
    z = depth_m[::stride, ::stride].astype(np.float64)
    v, u = np.nonzero((ids >= 0) & np.isfinite(z) & (z > 0))
    r, z = ids[v, u], z[v, u]
    v, u = v * stride, u * stride
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], -1)
    order = np.argsort(r, kind="stable")
    r, pts = r[order], pts[order]
    cuts = np.flatnonzero(np.diff(r)) + 1
    return {int(g[0]): p for g, p in zip(np.split(r, cuts), np.split(pts, cuts)) if len(g)}


def observation_msg(view, encoder: str) -> Optional["trmsg.Observation"]:
    """The frame's observation, or None without an instance map, depth or K (nothing to place in 3D)."""
    out, result, s = view.out, view.result, view.settings
    depth = view.depth  # metres, already checked against the image's size (publish.py)
    if out.instance is None or depth is None or view.K is None or not len(result) or \
            depth.shape != out.instance.shape:
        return None
    points = region_points(out.instance, depth, view.K, s.depth_stride)
    background = out.label >= len(result.labels) - result.num_background
    tokens = result.tokens.float().cpu().numpy()
    tids = result.track_ids if result.track_ids is not None else np.zeros(len(result), np.uint32)
    msg = trmsg.Observation(header=view.header, encoder=encoder, token_dim=int(tokens.shape[1]),
                            query=view.query, height=depth.shape[0], width=depth.shape[1],
                            k=[float(x) for x in np.asarray(view.K, np.float64).reshape(9)],
                            depth_step=DEPTH_STEP)
    msg.depth = array_to_image(np.ascontiguousarray(np.nan_to_num(depth[::DEPTH_STEP, ::DEPTH_STEP], nan=0.0),
                                                    np.float32), "32FC1", view.header)
    for r in range(len(result)):
        if background[r]:
            continue
        p = points.get(r, np.zeros((0, 3)))
        box = [int(b) for b in out.boxes[r]]
        # Arrays as array.array: rclpy takes them whole, where a numpy array is checked value by value.
        msg.regions.append(trmsg.ObservedRegion(
            token=packed(tokens[r], "f"), label=result.labels[int(out.label[r])], score=float(out.prob[r]),
            track_id=int(tids[r]), box=box, pixels=int(out.area[r]), depth_pixels=len(p) * s.depth_stride ** 2,
            points=packed(bounded(p, s.memory_max_detection_points).reshape(-1), "f")))
    return msg


def checked(msg, encoder: str, token_dim: int) -> None:
    """Refuse what cannot be fused: another encoder's tokens, sizes that do not add up, non-finite K (and, in
    memory_frame, non-finite tokens or scores)."""
    if msg.encoder != encoder or msg.token_dim != token_dim:
        raise ObservationError("observation_encoder", f"tokens from {msg.encoder!r} ({msg.token_dim}-d), this memory "
                                                      f"holds {encoder!r} ({token_dim}-d)")
    if len(msg.regions) > MAX_REGIONS:
        raise ObservationError("observation_size", f"{len(msg.regions)} regions (at most {MAX_REGIONS})")
    K = np.asarray(msg.k, np.float64)
    if not np.isfinite(K).all() or K[0] <= 0 or K[4] <= 0 or not msg.height or not msg.width or not msg.depth_step:
        raise ObservationError("observation_camera", "K, the image size or depth_step is not usable")
    for reg in msg.regions:
        if len(reg.token) != token_dim or len(reg.points) % 3:
            raise ObservationError("observation_size", f"a region with a {len(reg.token)}-d token and "
                                                       f"{len(reg.points)} point values")


def memory_frame(msg, encoder: str, token_dim: int):
    """The MemoryFrame of an observation (memory_stage.py), its points already in the optical frame."""
    checked(msg, encoder, token_dim)
    n = len(msg.regions)
    tokens = np.stack([np.asarray(r.token, np.float32) for r in msg.regions]) if n else np.zeros((0, token_dim))
    scores = np.array([r.score for r in msg.regions], np.float64)
    if not (np.isfinite(tokens).all() and np.isfinite(scores).all()):
        raise ObservationError("observation_values", "a region with a non-finite token or score")
    try:
        stamp = stamp_ns(msg.header.stamp)
        depth = depth_to_meters(msg.depth)
    except ImageError as exc:
        raise ObservationError(f"observation_{exc.reason}", f"observation: {exc}") from exc
    step = msg.depth_step
    if depth.shape != (-(-msg.height // step), -(-msg.width // step)):
        raise ObservationError("observation_size", f"a {depth.shape[1]}x{depth.shape[0]} depth image for a "
                                                   f"{msg.width}x{msg.height} image at step {step}")
    K = np.asarray(msg.k, np.float64).reshape(3, 3).copy()
    K[:2] /= step  # the subsampled image's pixel (u // step) sees what the full image's pixel u sees
    points = {}
    for i, reg in enumerate(msg.regions):
        p = np.asarray(reg.points, np.float64).reshape(-1, 3)
        p = p[np.isfinite(p).all(1) & (p[:, 2] > 0)]
        if len(p):
            points[i] = p
    return MemoryFrame(msg.header, stamp, tokens, [r.label for r in msg.regions], scores, np.zeros(n, bool),
                       np.array([r.track_id for r in msg.regions], np.uint32), None, None, K, msg.query,
                       points=points, depth_m=depth,
                       boxes=np.array([list(r.box) for r in msg.regions], np.float64).reshape(-1, 4) / step,
                       pixels=np.array([r.pixels for r in msg.regions], np.int64))
