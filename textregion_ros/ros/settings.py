"""ROS parameters: every knob declared with its effective value, a description and a range.

The ``preset`` parameter is resolved first; every PipelineConfig field is then declared with that
preset's value (the family default filled in), so ``ros2 param get`` shows what runs, and YAML
or command-line overrides win as usual. Ranges come from the knob table's rows, so the node and
the library reject the same values. Model knobs are read-only: they need a restart.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from .. import knobs
from ..config import PRESET_NAMES, PipelineConfig, preset
from ..knobs import INTAKE, LIFECYCLE, MEMORY, OUTPUTS, STAGES, TEXT, TRACKS, knob
from ..labels import LabelError, check_labels
from ..masks.sam2_build import SAM2_MODELS, sam2_size
from ..masks.sam2_everything import CPU_POINT_BATCH
from ..memory.config import MemoryConfig
from ..tracks.locks import LockConfig
from ..tracks.tracker import TrackerConfig

MAX_STANDING_QUERIES = 32


def mirror(cls, name: str):
    """A node setting that is another row of the table (TrackerConfig.min_iou as track_min_iou): same
    default, range and description, kept in one place."""
    f = cls.__dataclass_fields__[name]
    return dataclasses.field(default=f.default, metadata=f.metadata)


@dataclass
class NodeSettings:
    """The node's own knobs, one row each (knobs.py); the pipeline's are PipelineConfig's rows."""
    autostart: bool = knob(True, "configure and activate at start (false: wait for `ros2 lifecycle set`)",
                           consumer=LIFECYCLE)
    compressed: bool = knob(False, "subscribe to <image>/compressed (sensor_msgs/CompressedImage) instead of "
                            "<image>", consumer=INTAKE)
    image_qos: str = knob("sensor_data", "camera subscription QoS: sensor_data (best effort, keep last 5) | "
                          "reliable", consumer=INTAKE, choices=("sensor_data", "reliable"))
    sync_tolerance: float = knob(0.05, "seconds between an image and the depth frame matched to it",
                                 range=(0.0, 10.0), runtime=True, consumer=INTAKE)
    max_age: float = knob(1.0, "seconds; frames older than this when taken are skipped (0 = no limit)",
                          range=(0.0, 3600.0), runtime=True, consumer=STAGES)
    max_future: float = knob(5.0, "seconds; frames stamped further ahead of the node's clock are refused "
                             "(0 = no limit)", range=(0.0, 86400.0), runtime=True, consumer=INTAKE)
    max_rate: float = knob(0.0, "processing rate cap in Hz (0 = as fast as frames come)", range=(0.0, 1000.0),
                           runtime=True, consumer=STAGES)
    cameras: Tuple[str, ...] = knob((), "camera names; each has its inputs and outputs under <namespace>/<camera>/ "
                                    "and its own frame slot, depth matching, tracks, locks and counters, on one "
                                    "set of models (empty: one camera on today's topic names)", consumer=INTAKE)
    best_window: float = knob(2.0, "with several cameras: grounded_best compares the cameras' groundings stamped "
                              "within this many seconds of the newest", range=(0.0, 3600.0), runtime=True,
                              consumer=OUTPUTS)
    queries: Tuple[str, ...] = knob((), f"standing queries grounded on every frame (at most "
                                    f"{MAX_STANDING_QUERIES})", runtime=True, consumer=TEXT)
    publish_masks: bool = knob(True, "embed each region's mask crop in regions and grounded (false: boxes and 3D "
                               "only: small messages, readable with ros2 topic echo)", runtime=True, consumer=OUTPUTS)
    publish_tokens: bool = knob(False, "include each region's token in RegionArray", runtime=True, consumer=OUTPUTS)
    publish_overlay: bool = knob(True, "publish the overlay image", runtime=True, consumer=OUTPUTS)
    publish_markers: bool = knob(True, "publish RViz markers", runtime=True, consumer=OUTPUTS)
    publish_instance_mask: bool = knob(True, "publish the mono16 instance mask", runtime=True, consumer=OUTPUTS)
    overlay_alpha: float = knob(0.45, "opacity of the masks in the overlay", range=(0.0, 1.0), runtime=True,
                                consumer=OUTPUTS)
    depth_stride: int = knob(2, "depth subsampling for 3D medians (1 = every pixel)", range=(1, 16), runtime=True,
                             consumer=OUTPUTS)
    tracking: bool = knob(True, "give regions stable track ids, smooth their labels over time and lock each "
                          "query's target", runtime=True, consumer=TRACKS)
    track_iou_weight: float = mirror(TrackerConfig, "iou_weight")
    track_min_iou: float = mirror(TrackerConfig, "min_iou")
    track_min_similarity: float = mirror(TrackerConfig, "min_similarity")
    track_confirm_hits: int = mirror(TrackerConfig, "confirm_hits")
    track_max_misses: int = mirror(TrackerConfig, "max_misses")
    track_token_smoothing: float = mirror(TrackerConfig, "token_smoothing")
    track_grid: int = mirror(TrackerConfig, "grid")
    track_max_motion_px: float = mirror(TrackerConfig, "max_motion_px")
    lock_margin: float = mirror(LockConfig, "margin")
    lock_frames: int = mirror(LockConfig, "frames")
    target_frame: str = knob("", "frame of grounded_point/pose/box/cloud (e.g. base_link, map) via tf2 at the "
                             "image stamp; empty = the image's optical frame", consumer=OUTPUTS)
    tf_timeout: float = knob(0.05, "seconds to wait for target_frame's transform; on failure 3D stays in the "
                             "camera frame", range=(0.0, 5.0), runtime=True, consumer=OUTPUTS)
    max_cloud_points: int = knob(20000, "most points in grounded_cloud (evenly subsampled)", range=(100, 1_000_000),
                                 runtime=True, consumer=OUTPUTS)
    publish_detections: bool = knob(True, "also publish vision_msgs detections and detections_3d (when vision_msgs "
                                    "is installed)", runtime=True, consumer=OUTPUTS)
    memory: bool = knob(False, "remember the objects seen in this process, in memory_frame, for the find "
                        "service and memory/* (frames are then processed even when no other output has a reader); "
                        "the launch file's memory:=true runs the memory in its own node, textregion_memory, instead",
                        consumer=MEMORY)
    memory_sources: Tuple[str, ...] = knob((), "textregion_memory: the observation topics it fuses (other "
                                           "namespaces or robots: /robot2/textregion/observation); empty: "
                                           "observation in its namespace, or <camera>/observation for each of "
                                           "cameras", consumer=MEMORY)
    memory_frame: str = knob("map", "the fixed frame objects are remembered in (map or odom); a frame without a "
                             "transform there at its stamp is not fused", consumer=MEMORY)
    memory_file: str = knob("", "file the memory is loaded from on configure and saved to (atomically) on a "
                            "timer, on deactivate and on shutdown; empty = not kept", consumer=MEMORY)
    memory_save_every: float = knob(60.0, "seconds between saves of memory_file (0 = only on deactivate, "
                                    "shutdown and the save service)", range=(0.0, 86400.0), runtime=True,
                                    consumer=MEMORY)
    memory_publish_every: float = knob(1.0, "seconds between publications of memory/objects, memory/markers and "
                                       "memory/cloud, each holding every remembered object (0 = after every fused "
                                       "frame); memory/grounded follows every fused frame", range=(0.0, 3600.0),
                                       runtime=True, consumer=MEMORY)
    memory_voxel_size: float = mirror(MemoryConfig, "voxel_size")
    memory_max_points: int = mirror(MemoryConfig, "max_points")
    memory_max_objects: int = mirror(MemoryConfig, "max_objects")
    memory_min_overlap: float = mirror(MemoryConfig, "min_overlap")
    memory_min_cosine: float = mirror(MemoryConfig, "min_cosine")
    memory_overlap_weight: float = mirror(MemoryConfig, "overlap_weight")
    memory_merge_every: int = mirror(MemoryConfig, "merge_every")
    memory_merge_overlap: float = mirror(MemoryConfig, "merge_overlap")
    memory_merge_cosine: float = mirror(MemoryConfig, "merge_cosine")
    memory_min_observations: int = mirror(MemoryConfig, "min_observations")
    memory_noise_frames: int = mirror(MemoryConfig, "noise_frames")
    memory_miss_frames: int = mirror(MemoryConfig, "miss_frames")
    memory_depth_tolerance: float = mirror(MemoryConfig, "depth_tolerance")
    memory_max_detection_points: int = mirror(MemoryConfig, "max_detection_points")
    memory_min_points: int = mirror(MemoryConfig, "min_points")


# Derived from the rows: nothing below is written by hand.
PRESET_DOC = f"base configuration: one of {list(PRESET_NAMES)}; every other knob defaults to its value"
ROWS: Dict[str, knobs.Knob] = {**{f.name: k for f, k in knobs.rows(PipelineConfig)},
                               **{f.name: k for f, k in knobs.rows(NodeSettings)}}
RUNTIME_KNOBS = tuple(f.name for f, k in knobs.rows(PipelineConfig) if k.runtime)
DESCRIPTIONS: Dict[str, str] = {"preset": PRESET_DOC, **{n: k.doc for n, k in ROWS.items()}}


def read_only(name: str) -> bool:
    return name == "preset" or (name in ROWS and not ROWS[name].runtime)


def descriptor(name: str, value: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(name=name, description=DESCRIPTIONS.get(name, ""))
    rng = ROWS[name].range if name in ROWS else None
    if rng is not None and isinstance(value, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    elif rng is not None and isinstance(value, int) and not isinstance(value, bool):
        d.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(rng[1]), step=1)]
    d.read_only = read_only(name)
    if rng is not None:
        d.additional_constraints = f"finite, in [{rng[0]}, {rng[1]}]"
    choices = ROWS[name].choices if name in ROWS else ()
    if name == "preset":
        choices = tuple(PRESET_NAMES)
    if choices:  # `ros2 param describe` shows the choices as the constraint, not only in the text
        d.additional_constraints = "one of: " + ", ".join(choices)
    elif name in ROWS and ROWS[name].constraint:
        d.additional_constraints = ROWS[name].constraint
    if d.read_only:
        d.description += " (read-only: set it in the params file and restart the node)"
    return d


DTYPE_NAMES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def in_use(cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` with "auto" and "" replaced by what they mean on this machine, so that ``ros2 param get``
    shows what runs: the device, the dtype, compile off on the CPU (where it is ignored), SAM2's decoder
    batch on the CPU and the SAM2 weights' hub id."""
    cfg = cfg.resolved()
    try:
        dev = cfg.torch_device()
        dtype = DTYPE_NAMES[str(cfg.torch_dtype())]
    except (RuntimeError, ValueError):  # e.g. cuda asked for and absent: configure says so
        return cfg
    sam2_weights, point_batch = cfg.sam2_weights, cfg.point_batch
    if cfg.mask_source == "sam2" and not sam2_weights:
        sam2_weights = SAM2_MODELS[sam2_size(cfg.sam2_model)][1]
    if point_batch == 0 and dev.type != "cuda":  # on CUDA, auto follows points_per_side, a runtime knob
        point_batch = CPU_POINT_BATCH
    cfg = dataclasses.replace(cfg, device=str(dev), dtype=dtype, compile=cfg.compile and dev.type == "cuda",
                              sam2_weights=sam2_weights, point_batch=point_batch)
    if cfg.random_weights:
        # Random SAM2 heads predict IoU and stability far below the real thresholds (no region would pass),
        # and a random text tower may label every region as background (the memory would stay empty): with
        # random weights, every region passes and none is background, so every output shows something.
        cfg = dataclasses.replace(cfg, **RANDOM_WEIGHTS_DEFAULTS)
    return cfg


RANDOM_WEIGHTS_DEFAULTS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "background": ()}


# Knobs whose shown value depends on others' declared values: declared after them, from what they were
# given (a YAML device: cpu on a GPU machine must not leave dtype at the bf16 that "auto" meant there).
DEPENDS_ON = {"dtype": ("device",), "compile": ("device",), "point_batch": ("device",),
              "sam2_weights": ("mask_source", "sam2_model"),
              **{name: ("random_weights",) for name in RANDOM_WEIGHTS_DEFAULTS}}


def effective_defaults(preset_name: str) -> Dict[str, Any]:
    """Every parameter's value under ``preset_name`` as it runs here, in ROS types (lists, no None)."""
    cfg = in_use(preset(preset_name))
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


def check_together(config: PipelineConfig, s: NodeSettings) -> None:
    """Rules across the pipeline's knobs and the node's (each table checks its own rows)."""
    if len(s.cameras) > 1 and config.target_tracking == "sam2":
        raise ValueError("target_tracking sam2 carries one target for one camera: use it with one camera")


def tracker_config(s: NodeSettings) -> TrackerConfig:
    return TrackerConfig(**{f.name: getattr(s, f"track_{f.name}") for f in dataclasses.fields(TrackerConfig)})


def memory_config(s: NodeSettings) -> MemoryConfig:
    return MemoryConfig(**{f.name: getattr(s, f"memory_{f.name}") for f in dataclasses.fields(MemoryConfig)})


MAX_CAMERAS = 8
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # one ROS name token: it becomes a namespace


def check_cameras(names) -> None:
    if len(names) > MAX_CAMERAS:
        raise ValueError(f"at most {MAX_CAMERAS} cameras, got {len(names)}")
    bad = [n for n in names if not CAMERA_NAME.match(n)]
    if bad:
        raise ValueError(f"camera names must be ROS name tokens (a letter, then letters, digits or _): {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"camera names must be unique, got {list(names)}")


def validate_settings(s: NodeSettings) -> None:
    knobs.check(s)  # ranges and choices, the track_* and lock_* rows included
    for name in ("target_frame", "memory_frame"):
        frame = getattr(s, name)
        if len(frame) > 256 or not frame.isprintable() or frame.strip() != frame:
            raise ValueError(f"{name} must be a printable frame id without spaces around it, got {frame!r}")
    if s.memory and not s.memory_frame:
        raise ValueError("memory needs a memory_frame (map or odom)")
    check_cameras(s.cameras)
    if len(s.queries) > MAX_STANDING_QUERIES:
        raise ValueError(f"at most {MAX_STANDING_QUERIES} standing queries, got {len(s.queries)}")
    try:
        check_labels(s.queries, "queries")
    except LabelError as exc:
        raise ValueError(str(exc)) from None


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return f"{len(value)} labels" if len(value) > 4 else (", ".join(value) or "none")
    if value is None:
        return "family default"
    return f"{value}".lower() if isinstance(value, bool) else f"{value}" if value != "" else '""'


def parameter_table() -> str:
    """The README's parameter table, from the rows (test_knobs checks the README holds it)."""
    bar = " \\| "  # a | inside a Markdown table cell
    lines = ["| parameter | default | per preset | range or choices | at runtime | what |", "|---|---|---|---|---|---|",
             f"| `preset` | realtime | | {bar.join(PRESET_NAMES)} | no | {PRESET_DOC} |"]
    for cls in (PipelineConfig, NodeSettings):
        for f, k in knobs.rows(cls):
            presets = ", ".join(f"{p}: {_cell(v)}" for p, v in k.presets.items())
            limits = f"[{k.range[0]}, {k.range[1]}]" if k.range else bar.join(k.choices)
            doc = k.doc.replace("|", bar.strip())
            lines.append(f"| `{f.name}` | {_cell(f.default)} | {presets} | {limits} | "
                         f"{'yes' if k.runtime else 'no'} | {doc} |")
    return "\n".join(lines)
