"""Every knob of the pipeline in one dataclass, plus the named presets.

Defaults are the TextRegion paper's; presets override a handful of fields.
The ROS node fills the same dataclass from its parameters (ros/params.py),
so YAML, Python and ROS share one vocabulary of names.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from .labels import MAX_LABELS, check_labels

DEFAULT_VOCABULARY: Tuple[str, ...] = (
    "person", "chair", "sofa; couch", "table", "desk", "bed", "cabinet",
    "shelf; bookshelf", "door", "window", "monitor; screen", "laptop",
    "keyboard", "computer mouse", "cell phone", "book", "bottle", "cup; mug",
    "bowl", "plate", "box", "bag; backpack", "lamp", "plant", "trash can",
    "pillow", "towel", "remote control", "scissors", "toy", "shoe",
    "apple", "banana", "orange", "sink", "refrigerator", "microwave", "oven",
    "clock", "picture frame", "tool", "cable",
)
DEFAULT_BACKGROUND: Tuple[str, ...] = ("background", "wall", "floor", "ceiling")

# Frames the pipeline accepts. Work at frame resolution is chunked (compose.py), so memory stays
# bounded up to this size; larger frames are refused before any decoding or upload.
MAX_PIXELS = 4096 * 4096
MAX_SIDE = 8192
MIN_SIDE = 16


# Every numeric knob's closed range. NaN and inf are never accepted. The ROS parameter descriptors
# are built from this table, so the node and the library reject the same values.
NUMERIC_RANGES: Dict[str, Tuple[float, float]] = {
    "sam2_input_size": (256, 2048),
    "points_per_side": (1, 64),
    "point_batch": (0, 4096),
    "pred_iou_thresh": (0.0, 1.0),
    "stability_score_thresh": (0.0, 1.0),
    "stability_score_offset": (0.0, 10.0),
    "box_nms_thresh": (0.0, 1.0),
    "min_mask_area": (0, 65536),
    "fuse_thresh": (0.0, 1.0),
    "max_masks": (0, 1024),
    "force_masks": (0, 1024),
    "superpixel_segments": (2, 1024),
    "global_weight": (0.0, 10.0),
    "global_patch_threshold": (-2.0, 2.0),
    "region_logit_scale": (0.0, 1000.0),
    "abstain_threshold": (0.0, 1.0),
}


@dataclass
class PipelineConfig:
    # --- image-text encoder (open_clip names; see encoders/registry.py) ---
    encoder_model: str = "ViT-L-14-336"
    # open_clip pretrained tag, a local checkpoint path, or "" for the model's default tag.
    encoder_weights: str = "openai"
    # Random weights must be asked for by name; missing weights are an error otherwise.
    random_weights: bool = False

    # --- mask source ---
    mask_source: str = "sam2"  # "sam2" | "superpixels" | "given"
    sam2_model: str = "large"  # tiny | small | base_plus | large
    # An HF id (facebook/sam2.1-hiera-large), a local .pt path, or "" for the model's HF id.
    sam2_weights: str = ""
    sam2_input_size: int = 1024
    points_per_side: int = 16
    point_batch: int = 0  # 0 = auto: all points in one decoder batch on CUDA, 64 on the CPU
    pred_iou_thresh: float = 0.6
    stability_score_thresh: float = 0.6
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.9
    # TextRegion's rule: drop masks of <= this many pixels on SAM2's 256x256 low-resolution grid
    # (input 1024), after NMS. At other input sizes the count is scaled to the same image fraction.
    min_mask_area: int = 100
    multimask: bool = True
    fuse_masks: bool = True
    fuse_thresh: float = 0.8
    max_masks: int = 0  # 0 = no cap; >0 keeps the top-K after filtering
    force_masks: int = 0  # benchmarks only: exactly K masks whatever random weights let through
    superpixel_segments: int = 64

    # --- region tokens ---
    # Multi-resolution crop grid: "auto" (the paper's rule: rescale to short side 672 / long side <= 2016,
    # then floor(H/crop) x floor(W/crop) tiles that slide back inside the image), "RxC" (a fixed grid of
    # the frame as it is), or "none" (the global view only).
    tiles: str = "auto"
    use_global_view: bool = True
    global_weight: Optional[float] = None  # None = the encoder family's default (CLIP 1.0, SigLIP2/PE 0.5)
    remove_global_patches: bool = True
    global_patch_threshold: float = 0.07
    # CLIP only. The official code has two region heads: "segmentation" (model_semantic.py: raw values,
    # no MLP) and "referring" (TextRegionSegmenter.py, used for referring expressions: L2-normalised
    # values, then the last block's MLP). SigLIP2 and PE have one head each.
    clip_head: str = "segmentation"

    # --- text and decisions ---
    templates: str = "imagenet"  # "imagenet" | "short" | "none"
    region_logit_scale: float = 50.0
    abstain_threshold: float = 0.5
    vocabulary: Tuple[str, ...] = DEFAULT_VOCABULARY
    background: Tuple[str, ...] = DEFAULT_BACKGROUND

    # --- execution ---
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False  # CUDA graphs for SAM2 and the encoder (CUDA only; ~1 min warm-up)

    # --- time ---
    # "sam2": between full frames, the locked target's mask is carried by SAM2's memory attention
    # (masks/sam2_propagate.py); needs mask_source "sam2". "none": every frame is a full frame.
    target_tracking: str = "none"

    def resolved(self) -> "PipelineConfig":
        """The same config with family-dependent defaults filled in (what actually runs)."""
        if self.global_weight is not None:
            return self
        from .encoders import family_for  # late: encoders import open_clip

        return dataclasses.replace(self, global_weight=family_for(self.encoder_model).default_global_weight)

    def replace(self, **overrides: Any) -> "PipelineConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        cfg = dataclasses.replace(self, **overrides)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        check_ranges(self, {k: r for k, r in NUMERIC_RANGES.items() if getattr(self, k) is not None})  # None = default
        if self.mask_source not in ("sam2", "superpixels", "given"):
            raise ValueError(f"mask_source must be sam2, superpixels or given, not {self.mask_source!r}")
        if self.sam2_input_size % 64 != 0 or self.sam2_input_size < 256:
            raise ValueError("sam2_input_size must be a multiple of 64 and at least 256")
        if self.points_per_side < 1:
            raise ValueError("points_per_side must be >= 1")
        check_labels(self.vocabulary, "vocabulary")
        check_labels(self.background, "background")
        if not self.vocabulary and not self.background:
            raise ValueError("the vocabulary needs at least one label")
        if len(self.vocabulary) + len(self.background) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels (vocabulary + background), got "
                             f"{len(self.vocabulary) + len(self.background)}")
        parse_tiles(self.tiles)  # raises with the reason
        if self.tiles == "none" and not self.use_global_view:
            raise ValueError("with tiles 'none' the global view is required")
        if self.clip_head not in ("segmentation", "referring"):
            raise ValueError(f"clip_head must be segmentation or referring, not {self.clip_head!r}")
        if self.target_tracking not in ("none", "sam2"):
            raise ValueError(f"target_tracking must be none or sam2, not {self.target_tracking!r}")
        if self.target_tracking == "sam2" and self.mask_source != "sam2":
            raise ValueError("target_tracking sam2 needs mask_source sam2")
        if self.templates not in ("imagenet", "short", "none"):
            raise ValueError(f"templates must be imagenet, short or none, not {self.templates!r}")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {self.device!r} requested but CUDA is not available")
        return dev

    def torch_dtype(self) -> torch.dtype:
        dev = self.torch_device()
        if self.dtype == "auto":
            return torch.bfloat16 if dev.type == "cuda" else torch.float32
        table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if self.dtype not in table:
            raise ValueError(f"dtype must be auto, fp32, bf16 or fp16, not {self.dtype!r}")
        if dev.type == "cpu" and self.dtype != "fp32":
            raise ValueError("reduced precision is CUDA-only; use dtype fp32 on the CPU")
        return table[self.dtype]


PRESETS: Dict[str, Dict[str, Any]] = {
    # TextRegion reference defaults: SAM2.1-L, 16x16 points, ViT-L/14@336 multi-resolution with the
    # official tiling, and the semantic-segmentation head its tables were measured with.
    "paper": {},
    # The node's default: camera frame rate on one GPU. SAM2 runs at 512: its mask decoder's
    # upscaling dominates at 1024, and 128x128 masks are finer than the 28x28 token grid.
    "realtime": dict(
        encoder_model="ViT-B-16", encoder_weights="openai", sam2_model="tiny",
        sam2_input_size=512, points_per_side=16, tiles="2x2", templates="short",
        clip_head="referring", dtype="auto", compile=True,  # CUDA graphs; ignored on the CPU
    ),
    # The node's presets use the referring head: its job is finding the region a phrase names, which is
    # the official referring-expression path.
    # No GPU: smaller SAM2 input, fewer points, ViT-B/16 with a global view only.
    "cpu-lite": dict(
        encoder_model="ViT-B-16", encoder_weights="openai", sam2_model="tiny",
        sam2_input_size=512, points_per_side=6, tiles="none", templates="short", clip_head="referring",
        max_masks=24, device="cpu", dtype="fp32",
    ),
}


def check_ranges(obj: Any, ranges: Dict[str, Tuple[float, float]], what: str = "") -> None:
    """Each named attribute of ``obj`` must be a finite number (not a bool) within its range."""
    for name, (lo, hi) in ranges.items():
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ValueError(f"{what}{name} must be a finite number in [{lo}, {hi}], got {v!r}")


def parse_tiles(tiles: str) -> Optional[Tuple[int, int]]:
    """"auto" -> None; "none" -> (0, 0); "RxC" -> (R, C) with 1 <= R, C <= 8."""
    if tiles == "auto":
        return None
    if tiles == "none":
        return (0, 0)
    parts = str(tiles).lower().split("x")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        rows, cols = int(parts[0]), int(parts[1])
        if 1 <= rows <= 8 and 1 <= cols <= 8:
            return rows, cols
    raise ValueError(f"tiles must be 'auto', 'none' or 'RxC' with R and C in 1..8, not {tiles!r}")


def auto_tiles(height: int, width: int, crop: int, long_side: int = 2016, short_side: int = 672
               ) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """The official multi-resolution rule -> ((rescaled h, w), (rows, cols)).

    mmcv ``imrescale(img, (2016, 672))``: one scale factor so the short side is 672 and the long
    side at most 2016, sizes rounded half up; then ``max(h // crop, 1)`` x ``max(w // crop, 1)`` tiles.
    """
    scale = min(long_side / max(height, width), short_side / min(height, width))
    h, w = int(height * scale + 0.5), int(width * scale + 0.5)
    return (h, w), (max(h // crop, 1), max(w // crop, 1))


def preset(name: str, **overrides: Any) -> PipelineConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PipelineConfig().replace(**{**PRESETS[name], **overrides})
