"""ROS parameters: every knob declared with its effective value, a description and a range.

The ``preset`` parameter is resolved first; every PipelineConfig field is then declared with that
preset's value (the family default filled in), so ``ros2 param get`` shows what runs, and YAML
or command-line overrides win as usual. Ranges come from config.NUMERIC_RANGES, so the node and
the library reject the same values. Model knobs are read-only: they need a restart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..config import NUMERIC_RANGES, PRESETS, PipelineConfig, check_ranges, preset
from ..labels import LabelError, check_labels
from ..targeting import LOCK_RANGES, TargetLock
from ..tracking import TRACKER_RANGES, TrackerConfig

# Knobs that change while running (no model reload). Everything else in PipelineConfig is read-only.
RUNTIME_KNOBS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "min_mask_area", "fuse_masks",
                 "fuse_thresh", "max_masks", "force_masks", "global_patch_threshold", "region_logit_scale",
                 "abstain_threshold", "remove_global_patches", "vocabulary", "background")
MAX_STANDING_QUERIES = 32


@dataclass
class NodeSettings:
    compressed: bool = False
    image_qos: str = "sensor_data"  # sensor_data (best effort, keep last 1) | reliable
    sync_tolerance: float = 0.05  # s between image and depth stamps
    max_age: float = 1.0  # s; older frames are dropped (0 = no limit)
    max_future: float = 5.0  # s; frames stamped further ahead of the node's clock are refused (0 = no limit)
    max_rate: float = 0.0  # Hz; 0 = as fast as frames come
    queries: Tuple[str, ...] = ()
    publish_tokens: bool = False
    publish_overlay: bool = True
    publish_markers: bool = True
    publish_instance_mask: bool = True
    overlay_alpha: float = 0.45
    depth_stride: int = 2
    # Region tracks and target lock (tracking.py, targeting.py); track_<x> is TrackerConfig.<x>.
    tracking: bool = True
    track_iou_weight: float = TrackerConfig.iou_weight
    track_min_iou: float = TrackerConfig.min_iou
    track_min_similarity: float = TrackerConfig.min_similarity
    track_confirm_hits: int = TrackerConfig.confirm_hits
    track_max_misses: int = TrackerConfig.max_misses
    track_token_smoothing: float = TrackerConfig.token_smoothing
    track_grid: int = TrackerConfig.grid
    track_max_motion_px: float = TrackerConfig.max_motion_px
    lock_margin: float = TargetLock.margin
    lock_frames: int = TargetLock.frames
    propagate_every: int = 3  # target_tracking sam2: a full frame every N frames, SAM2 memory between
    # 3D of the grounded target (geometry/target.py) and its frame.
    target_frame: str = ""  # "" = the image's optical frame
    tf_timeout: float = 0.05  # s to wait for target_frame's transform at the image stamp
    max_cloud_points: int = 20000
    publish_detections: bool = True  # vision_msgs Detection2DArray / Detection3DArray (when installed)


NODE_RANGES: Dict[str, Tuple[float, float]] = {
    "sync_tolerance": (0.0, 10.0), "max_age": (0.0, 3600.0), "max_future": (0.0, 86400.0),
    "max_rate": (0.0, 1000.0), "overlay_alpha": (0.0, 1.0), "depth_stride": (1, 16), "propagate_every": (1, 1000),
    "tf_timeout": (0.0, 5.0), "max_cloud_points": (100, 1_000_000),
}
NODE_RANGES.update({f"track_{k}": v for k, v in TRACKER_RANGES.items()})
NODE_RANGES.update({f"lock_{k}": v for k, v in LOCK_RANGES.items()})
NODE_READ_ONLY = ("compressed", "image_qos", "target_frame")

DESCRIPTIONS: Dict[str, str] = {
    "preset": f"base configuration: one of {sorted(PRESETS)}; every other knob defaults to its value",
    "encoder_model": "open_clip model name (CLIP ViT-*, ViT-*-SigLIP2*, PE-Core-*)",
    "encoder_weights": "open_clip pretrained tag (its metadata applies: QuickGELU, mean/std, interpolation) "
                       "or a local checkpoint path",
    "random_weights": "random weights for tests and benchmarks; every label is then meaningless",
    "mask_source": "sam2 | superpixels | given",
    "sam2_model": "SAM2.1 size: tiny | small | base_plus | large",
    "sam2_weights": "Hugging Face id or local .pt; empty = the size's facebook/sam2.1-hiera-* id",
    "sam2_input_size": "SAM2 input side in pixels (multiple of 64); 1024 is the paper's",
    "points_per_side": "SAM2 point grid per side (points_per_side^2 prompts)",
    "point_batch": "prompts per decoder batch; 0 = all at once on CUDA, 64 on the CPU",
    "pred_iou_thresh": "drop masks whose predicted IoU is not above this",
    "stability_score_thresh": "drop masks whose stability score is below this",
    "stability_score_offset": "logit offset of the stability score",
    "box_nms_thresh": "box IoU above which NMS drops the lower-scoring mask (1 = off)",
    "min_mask_area": "drop masks of at most this many pixels on SAM2's 256x256 grid (scaled at other sizes)",
    "multimask": "three masks per prompt (whole, part, sub-part)",
    "fuse_masks": "merge masks contained in a higher-priority mask (soft containment)",
    "fuse_thresh": "containment above which masks are merged",
    "max_masks": "keep at most this many masks by score (0 = no cap)",
    "force_masks": "benchmarks only: exactly this many masks (0 = off)",
    "superpixel_segments": "SLIC segments when mask_source is superpixels",
    "tiles": "multi-resolution views: auto (the paper's rule), RxC (fixed grid) or none (global view only)",
    "use_global_view": "encode the whole frame as well as the tiles",
    "global_weight": "weight of the global view in multi-resolution fusion (CLIP 1.0, SigLIP2/PE 0.5)",
    "remove_global_patches": "zero patches that look alike inside and outside regions (global patch removal)",
    "global_patch_threshold": "belonging-score threshold of global patch removal",
    "clip_head": "CLIP region head: segmentation (raw values, no MLP) or referring (normalised values + MLP)",
    "templates": "prompt templates: imagenet (80) | short (5) | none",
    "region_logit_scale": "softmax temperature of region labels and groundings",
    "abstain_threshold": "a query is found when its best region's probability reaches this",
    "vocabulary": "labels to classify regions into; 'a; b' are synonyms scored as the max",
    "background": "labels that regions may match but that are never reported as objects",
    "device": "auto | cpu | cuda | cuda:N",
    "dtype": "auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16",
    "compile": "CUDA graphs for SAM2 and the encoder (CUDA only; about a minute of warm-up)",
    "compressed": "subscribe to <image>/compressed (sensor_msgs/CompressedImage) instead of <image>",
    "image_qos": "camera subscription QoS: sensor_data (best effort) | reliable",
    "sync_tolerance": "seconds between an image and the depth frame matched to it",
    "max_age": "seconds; frames older than this when taken are skipped (0 = no limit)",
    "max_future": "seconds; frames stamped further ahead of the node's clock are refused (0 = no limit)",
    "max_rate": "processing rate cap in Hz (0 = as fast as frames come)",
    "queries": f"standing queries grounded on every frame (at most {MAX_STANDING_QUERIES})",
    "publish_tokens": "include each region's token in RegionArray",
    "publish_overlay": "publish the overlay image",
    "publish_markers": "publish RViz markers",
    "publish_instance_mask": "publish the mono16 instance mask",
    "overlay_alpha": "opacity of the masks in the overlay",
    "depth_stride": "depth subsampling for 3D medians (1 = every pixel)",
    "tracking": "give regions stable track ids, smooth their labels over time and lock each query's target",
    "track_iou_weight": "share of mask overlap in the region-to-track similarity (the rest is token cosine)",
    "track_min_iou": "mask overlap a region needs with a track's predicted mask to continue it",
    "track_min_similarity": "blended similarity a region needs to continue a track",
    "track_confirm_hits": "matches before a track gets its id (track_id is 0 until then)",
    "track_max_misses": "frames without a match before a track is dropped",
    "track_token_smoothing": "weight of a track's past in its token average (0 = this frame only)",
    "track_grid": "long side of the association grid in cells",
    "track_max_motion_px": "how far a partly hidden object may move per frame, in pixels",
    "lock_margin": "score by which another track must beat a query's locked target to take over",
    "lock_frames": "consecutive frames another track must win by lock_margin to take over",
    "target_tracking": "none (every frame is a full frame) | sam2 (between full frames, the active query's locked "
                       "target is carried by SAM2's memory attention and only grounded outputs are published)",
    "propagate_every": "with target_tracking sam2: one full frame every this many frames (1 = always full)",
    "target_frame": "frame of grounded_point/pose/box/cloud (e.g. base_link, map) via tf2 at the image stamp; "
                    "empty = the image's optical frame",
    "tf_timeout": "seconds to wait for target_frame's transform; on failure 3D stays in the camera frame",
    "max_cloud_points": "most points in grounded_cloud (evenly subsampled)",
    "publish_detections": "also publish vision_msgs detections and detections_3d (when vision_msgs is installed)",
}


def _kind(value: Any) -> type:
    if isinstance(value, bool):
        return bool
    if isinstance(value, (tuple, list)):
        return tuple
    return type(value)


def descriptor(name: str, value: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=DESCRIPTIONS.get(name, ""))
    rng = NUMERIC_RANGES.get(name) or NODE_RANGES.get(name)
    if rng is not None and isinstance(value, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    elif rng is not None and isinstance(value, int) and not isinstance(value, bool):
        d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
    d.read_only = name == "preset" or name in NODE_READ_ONLY or (
        name in {f.name for f in dataclasses.fields(PipelineConfig)} and name not in RUNTIME_KNOBS)
    if rng is not None:
        d.additional_constraints = f"finite, in [{rng[0]}, {rng[1]}]"
    if d.read_only:
        d.description += " (read-only: set it in the params file and restart the node)"
    return d


def effective_defaults(preset_name: str) -> Dict[str, Any]:
    """Every parameter's value under ``preset_name``, in ROS types (lists, no None)."""
    cfg = preset(preset_name).resolved()
    out: Dict[str, Any] = {"preset": preset_name}
    for f in dataclasses.fields(PipelineConfig):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    for f in dataclasses.fields(NodeSettings):
        v = getattr(NodeSettings(), f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def pipeline_config(values: Dict[str, Any]) -> PipelineConfig:
    """Parameter values -> validated PipelineConfig (raises ValueError with the reason)."""
    cfg = preset(values.get("preset") or "realtime")
    overrides: Dict[str, Any] = {}
    for f in dataclasses.fields(PipelineConfig):
        if f.name in values:
            v = values[f.name]
            overrides[f.name] = tuple(v) if isinstance(v, (list, tuple)) else v
    return cfg.replace(**overrides)


def node_settings(values: Dict[str, Any]) -> NodeSettings:
    kw = {f.name: values[f.name] for f in dataclasses.fields(NodeSettings) if f.name in values}
    if "queries" in kw:
        kw["queries"] = tuple(q.strip() for q in kw["queries"])
    s = NodeSettings(**kw)
    validate_settings(s)
    return s


def tracker_config(s: NodeSettings) -> TrackerConfig:
    return TrackerConfig(**{f.name: getattr(s, f"track_{f.name}") for f in dataclasses.fields(TrackerConfig)})


def validate_settings(s: NodeSettings) -> None:
    if s.image_qos not in ("sensor_data", "reliable"):
        raise ValueError(f"image_qos must be sensor_data or reliable, not {s.image_qos!r}")
    check_ranges(s, NODE_RANGES)  # the track_* and lock_* ranges included
    if len(s.target_frame) > 256 or not s.target_frame.isprintable() or s.target_frame.strip() != s.target_frame:
        raise ValueError(f"target_frame must be a printable frame id without spaces around it, got {s.target_frame!r}")
    if len(s.queries) > MAX_STANDING_QUERIES:
        raise ValueError(f"at most {MAX_STANDING_QUERIES} standing queries, got {len(s.queries)}")
    try:
        check_labels(s.queries, "queries")
    except LabelError as exc:
        raise ValueError(str(exc)) from None
