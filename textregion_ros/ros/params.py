"""ROS parameters <-> PipelineConfig and the node's own settings.

The ``preset`` parameter picks the base PipelineConfig. Every pipeline knob
is also a parameter; a YAML value of "" (strings), -1 (numbers) or [""] / [-1]
(lists) means "keep the preset's value", so config/perceive.yaml can list every knob
without pinning the preset's choices.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from ..config import PipelineConfig, preset

# Knobs that can change while running (no model reload).
RUNTIME_KNOBS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "min_mask_area", "fuse_masks",
                 "fuse_thresh", "max_masks", "force_masks", "global_patch_threshold", "region_logit_scale", "abstain_threshold",
                 "remove_global_patches", "vocabulary", "background")
UNSET = {str: "", int: -1, float: -1.0}


@dataclass
class NodeSettings:
    compressed: bool = False
    image_qos: str = "sensor_data"  # sensor_data (best effort, keep last 1) | reliable
    sync_tolerance: float = 0.05  # s between image and depth stamps
    max_age: float = 1.0  # s; older frames are dropped (0 = no limit)
    max_rate: float = 0.0  # Hz; 0 = as fast as frames come
    queries: Tuple[str, ...] = ()
    publish_tokens: bool = False
    publish_overlay: bool = True
    publish_markers: bool = True
    publish_instance_mask: bool = True
    overlay_alpha: float = 0.45
    depth_stride: int = 2


def _kind(value: Any) -> type:
    if isinstance(value, bool):
        return bool
    if isinstance(value, (tuple, list)):
        return tuple
    return type(value)


def parameter_defaults(preset_name: str = "realtime") -> Dict[str, Any]:
    """Declared defaults: "unset" for every knob, so only YAML values override the preset.

    Booleans have no "unset" value, so they default to the chosen preset's.
    """
    base = preset(preset_name)
    out: Dict[str, Any] = {"preset": preset_name}
    for f in dataclasses.fields(PipelineConfig):
        value = getattr(base, f.name)
        kind = _kind(value) if value is not None else float
        if kind is bool:
            out[f.name] = value
        elif kind is tuple:
            out[f.name] = [""] if isinstance(value[0] if value else "", str) else [-1]
        else:
            out[f.name] = UNSET[kind]
    for f in dataclasses.fields(NodeSettings):
        value = getattr(NodeSettings(), f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out["queries"] = [""]
    return out


def pipeline_config(values: Dict[str, Any]) -> PipelineConfig:
    """Parameter values -> PipelineConfig (preset + the knobs that were set)."""
    cfg = preset(values.get("preset") or "realtime")
    overrides: Dict[str, Any] = {}
    for f in dataclasses.fields(PipelineConfig):
        if f.name not in values:
            continue
        v = values[f.name]
        current = getattr(cfg, f.name)
        kind = _kind(current) if current is not None else float
        if kind is bool:
            overrides[f.name] = bool(v)
        elif kind is tuple:
            items = [x for x in (v or []) if x not in ("", -1)]
            if items:
                overrides[f.name] = tuple(int(x) for x in items) if f.name == "tiles" else tuple(items)
        elif kind is float:
            if v is not None and float(v) != -1.0:
                overrides[f.name] = float(v)
        elif kind is int:
            if int(v) != -1:
                overrides[f.name] = int(v)
        elif kind is str:
            if v != "":
                overrides[f.name] = str(v)
    return cfg.replace(**overrides)


def node_settings(values: Dict[str, Any]) -> NodeSettings:
    kw = {}
    for f in dataclasses.fields(NodeSettings):
        if f.name in values:
            v = values[f.name]
            kw[f.name] = tuple(x for x in v if x.strip()) if f.name == "queries" else v
    s = NodeSettings(**kw)
    if s.image_qos not in ("sensor_data", "reliable"):
        raise ValueError(f"image_qos must be sensor_data or reliable, not {s.image_qos!r}")
    return s
