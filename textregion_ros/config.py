"""Every knob of the pipeline in one dataclass, plus the named presets.

Defaults are the TextRegion paper's; presets override a handful of fields.
The ROS node fills the same dataclass from its parameters (ros/params.py),
so YAML, Python and ROS share one vocabulary of names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

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
    min_mask_area: int = 100  # pixels at frame resolution
    multimask: bool = True
    fuse_masks: bool = True
    fuse_thresh: float = 0.8
    max_masks: int = 0  # 0 = no cap; >0 keeps the top-K after filtering
    force_masks: int = 0  # benchmarks only: exactly K masks whatever random weights let through
    superpixel_segments: int = 64

    # --- region tokens ---
    tiles: Tuple[int, int] = (2, 2)  # rows, cols of the multi-resolution crop grid; (0, 0) = global only
    use_global_view: bool = True
    global_weight: Optional[float] = None  # None = the encoder family's default (CLIP 1.0, SigLIP2/PE 0.5)
    remove_global_patches: bool = True
    global_patch_threshold: float = 0.07
    use_head_mlp: bool = False

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

    def replace(self, **overrides: Any) -> "PipelineConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        cfg = dataclasses.replace(self, **overrides)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.mask_source not in ("sam2", "superpixels", "given"):
            raise ValueError(f"mask_source must be sam2, superpixels or given, not {self.mask_source!r}")
        if self.sam2_input_size % 64 != 0 or self.sam2_input_size < 256:
            raise ValueError("sam2_input_size must be a multiple of 64 and at least 256")
        if self.points_per_side < 1:
            raise ValueError("points_per_side must be >= 1")
        rows, cols = self.tiles
        if (rows == 0) != (cols == 0) or rows < 0 or cols < 0:
            raise ValueError(f"tiles must be two positive ints or (0, 0), got {self.tiles}")
        if rows == 0 and not self.use_global_view:
            raise ValueError("with no tiles the global view is required")
        if self.templates not in ("imagenet", "short", "none"):
            raise ValueError(f"templates must be imagenet, short or none, not {self.templates!r}")
        if not 0.0 <= self.abstain_threshold <= 1.0:
            raise ValueError("abstain_threshold must be in [0, 1]")

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
    # TextRegion reference defaults: SAM2.1-L, 16x16 points, ViT-L/14@336 multi-resolution.
    "paper": {},
    # The node's default: camera frame rate on one GPU. SAM2 runs at 512: its mask decoder's
    # upscaling dominates at 1024, and 128x128 masks are finer than the 28x28 token grid.
    "realtime": dict(
        encoder_model="ViT-B-16", encoder_weights="openai", sam2_model="tiny",
        sam2_input_size=512, points_per_side=16, tiles=(2, 2), templates="short",
        dtype="auto", compile=True,  # CUDA graphs; ignored on the CPU
    ),
    # No GPU: smaller SAM2 input, fewer points, ViT-B/16 with a global view only.
    "cpu-lite": dict(
        encoder_model="ViT-B-16", encoder_weights="openai", sam2_model="tiny",
        sam2_input_size=512, points_per_side=6, tiles=(0, 0), templates="short",
        max_masks=24, device="cpu", dtype="fp32",
    ),
}


def preset(name: str, **overrides: Any) -> PipelineConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PipelineConfig().replace(**{**PRESETS[name], **overrides})
