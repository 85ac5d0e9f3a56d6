"""Every knob of the pipeline in one dataclass (rows of the knob table, knobs.py), plus the presets.

Defaults are the TextRegion paper's; a row's ``presets`` overrides it per preset. The ROS node
declares the same rows as parameters (ros/settings.py), so YAML, Python and ROS share one
vocabulary of names, ranges and descriptions.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from . import knobs
from .knobs import DECISIONS, ENCODER, EXECUTION, MASK_MODEL, MASKS, SEGMENTATION, TEXT, TOKENS, check, knob
from .labels import MAX_LABELS, check_labels
from .masks.registry import SOURCES

BACKENDS = ("auto", "torch", "onnxruntime")  # of each exported unit (backends/)
PROVIDERS = ("tensorrt", "cuda", "openvino", "cpu")  # onnx_providers' names (backends/ort.py maps them)
DEFAULT_PROVIDERS = ("cuda", "cpu")  # also what an empty list means (a dumped params file has [] for "unset")

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


@dataclass
class PipelineConfig:
    """Every knob of the pipeline, one row each (knobs.py). Defaults are the paper's."""
    # --- image-text encoder ---
    encoder_model: str = knob("ViT-L-14-336", "open_clip model name (CLIP ViT-*, ViT-*-SigLIP2*, PE-Core-*)",
                              consumer=ENCODER, presets={"realtime": "ViT-B-16", "cpu-lite": "ViT-B-16"})
    encoder_weights: str = knob("openai", "open_clip pretrained tag (its metadata applies: QuickGELU, mean/std, "
                                "interpolation), a local checkpoint path, or empty for the model's default tag",
                                consumer=ENCODER)
    random_weights: bool = knob(False, "random weights for tests and benchmarks (the nodes draw them from one "
                                "seed: each start the same); every label is then meaningless (missing weights "
                                "are an error otherwise)", consumer=ENCODER)

    # --- mask source ---
    mask_source: str = knob("sam2", " | ".join(SOURCES), consumer=MASK_MODEL, choices=tuple(SOURCES))
    sam2_model: str = knob("large", "SAM2.1 size: tiny | small | base_plus | large", consumer=MASK_MODEL,
                           presets={"realtime": "tiny", "cpu-lite": "tiny"},
                           choices=("tiny", "small", "base_plus", "large"))
    sam2_weights: str = knob("", "Hugging Face id (its repo holds sam2.1_hiera_<size>.pt) or local .pt; "
                             "empty = the size's facebook/sam2.1-hiera-* id",
                             consumer=MASK_MODEL)
    sam2_input_size: int = knob(1024, "SAM2 input side in pixels (multiple of 64); 1024 is the paper's",
                                range=(256, 2048), consumer=MASK_MODEL, presets={"realtime": 512, "cpu-lite": 512})
    points_per_side: int = knob(16, "SAM2 point grid per side (points_per_side^2 prompts)", range=(1, 64),
                                consumer=MASK_MODEL, presets={"cpu-lite": 6})
    point_batch: int = knob(0, "prompts per decoder batch; 0 = auto: all points_per_side^2 at once on CUDA, 64 "
                            "on the CPU", range=(0, 4096), consumer=MASKS)
    pred_iou_thresh: float = knob(0.6, "drop masks whose predicted IoU is not above this", range=(0.0, 1.0),
                                  runtime=True, consumer=MASKS)
    stability_score_thresh: float = knob(0.6, "drop masks whose stability score is below this", range=(0.0, 1.0),
                                         runtime=True, consumer=MASKS)
    stability_score_offset: float = knob(1.0, "logit offset of the stability score", range=(0.0, 10.0),
                                         runtime=True, consumer=MASKS)
    box_nms_thresh: float = knob(0.9, "box IoU above which NMS drops the lower-scoring mask (1 = off)",
                                 range=(0.0, 1.0), runtime=True, consumer=MASKS)
    # TextRegion's rule: drop masks of <= this many pixels on SAM2's 256x256 low-resolution grid
    # (input 1024), after NMS. At other input sizes the count is scaled to the same image fraction.
    min_mask_area: int = knob(100, "drop masks of at most this many pixels on SAM2's 256x256 grid (scaled at "
                              "other sizes)", range=(0, 65536), runtime=True, consumer=MASKS)
    multimask: bool = knob(True, "three masks per prompt (whole, part, sub-part)", runtime=True, consumer=MASKS)
    fuse_masks: bool = knob(True, "merge masks contained in a higher-priority mask (soft containment)",
                            runtime=True, consumer=MASKS)
    fuse_thresh: float = knob(0.8, "containment above which masks are merged", range=(0.0, 1.0), runtime=True,
                              consumer=MASKS)
    max_masks: int = knob(0, "keep at most this many masks by score (0 = no cap)", range=(0, 1024), runtime=True,
                          consumer=MASKS, presets={"cpu-lite": 24})
    force_masks: int = knob(0, "benchmarks only: exactly this many masks (0 = off)", range=(0, 1024), runtime=True,
                            consumer=MASKS)
    superpixel_segments: int = knob(64, "SLIC segments when mask_source is superpixels", range=(2, 1024),
                                    runtime=True, consumer=MASKS)

    # --- region tokens ---
    # "auto" is the paper's rule: rescale to short side 672 / long side <= 2016, then floor(H/crop) x
    # floor(W/crop) tiles that slide back inside the image; "RxC" tiles the frame as it is.
    tiles: str = knob("auto", "multi-resolution views: auto (the paper's rule), RxC (fixed grid) or none (global "
                      "view only)", consumer=TOKENS, presets={"realtime": "2x2", "cpu-lite": "none"})
    use_global_view: bool = knob(True, "encode the whole frame as well as the tiles", consumer=TOKENS)
    global_weight: Optional[float] = knob(None, "weight of the global view in multi-resolution fusion (CLIP 1.0, "
                                          "SigLIP2/PE 0.5)", range=(0.0, 10.0), consumer=TOKENS)
    remove_global_patches: bool = knob(True, "zero patches that look alike inside and outside regions (global "
                                       "patch removal)", runtime=True, consumer=TOKENS)
    global_patch_threshold: float = knob(0.07, "belonging-score threshold of global patch removal", range=(-2.0, 2.0),
                                         runtime=True, consumer=TOKENS)
    # CLIP only. The official code has two region heads: "segmentation" (model_semantic.py: raw values,
    # no MLP) and "referring" (TextRegionSegmenter.py: L2-normalised values, then the last block's MLP).
    # The node's presets use the referring head: its job is finding the region a phrase names.
    clip_head: str = knob("segmentation", "CLIP region head: segmentation (raw values, no MLP) or referring "
                          "(normalised values + MLP)", consumer=TOKENS,
                          presets={"realtime": "referring", "cpu-lite": "referring"},
                          choices=("segmentation", "referring"))

    # --- text and decisions ---
    templates: str = knob("imagenet", "prompt templates: imagenet (80) | short (5) | none", consumer=ENCODER,
                          presets={"realtime": "short", "cpu-lite": "short"}, choices=("imagenet", "short", "none"))
    region_logit_scale: float = knob(50.0, "softmax temperature of region labels and groundings",
                                     range=(0.0, 1000.0), runtime=True, consumer=DECISIONS)
    abstain_threshold: float = knob(0.5, "a query is found when its best region's probability reaches this",
                                    range=(0.0, 1.0), runtime=True, consumer=DECISIONS)
    vocabulary: Tuple[str, ...] = knob(DEFAULT_VOCABULARY, "labels to classify regions into; 'a; b' are synonyms "
                                       "scored as the max", runtime=True, consumer=TEXT)
    background: Tuple[str, ...] = knob(DEFAULT_BACKGROUND, "labels that regions may match but that are never "
                                       "reported as objects", runtime=True, consumer=TEXT)

    # --- execution ---
    device: str = knob("auto", "auto | cpu | cuda | cuda:N", consumer=EXECUTION, presets={"cpu-lite": "cpu"},
                        constraint="one of: auto, cpu, cuda, cuda:N")
    dtype: str = knob("auto", "auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16", consumer=EXECUTION,
                      presets={"cpu-lite": "fp32"}, choices=("auto", "fp32", "bf16", "fp16"))
    compile: bool = knob(False, "CUDA graphs for SAM2 and the encoder (CUDA only, ignored on the CPU; about a "
                         "minute of warm-up)", consumer=EXECUTION, presets={"realtime": True})
    # Exported graphs (backends/, textregion-export). "auto": the graphs where this device measured them faster
    # (the CPU) and they are exported for this configuration, torch otherwise, and the log line says which.
    sam2_backend: str = knob("auto", "SAM2's image encoder and prompt decoder: torch | onnxruntime (exported graphs; "
                             "missing or stale ones fail configure) | auto (onnxruntime on the CPU when exported "
                             "for this configuration, else torch, logged)", consumer=EXECUTION,
                             choices=BACKENDS)
    encoder_backend: str = knob("auto", "the image-text encoder's image trunk: torch | onnxruntime | auto (as "
                                "sam2_backend)", consumer=EXECUTION, choices=BACKENDS)
    onnx_providers: Tuple[str, ...] = knob(DEFAULT_PROVIDERS, "ONNX Runtime execution providers in order of "
                                           "preference (tensorrt, cuda, openvino, cpu; empty = cuda, cpu); one not "
                                           "installed is reported once and the next is used; on a CPU device cuda "
                                           "and tensorrt are passed over", consumer=EXECUTION,
                                           constraint="a list of: tensorrt, cuda, openvino, cpu")
    onnx_dir: str = knob("", "where textregion-export wrote the graphs; empty = ~/.cache/textregion_ros/onnx",
                         consumer=EXECUTION)

    # --- time ---
    target_tracking: str = knob("none", "none (every frame is a full frame) | sam2 (between full frames, the active "
                                "query's locked target is carried by SAM2's memory attention and only grounded "
                                "outputs are published)", consumer=MASK_MODEL, choices=("none", "sam2"))

    # --- segmentation: everything, or only where the query points (frames/patch_maps.py) ---
    segmentation: str = knob("everything", "everything (SAM2 decodes the whole point grid every frame) | target "
                             "(a frame with a query decodes only prompts placed by the query's patch map; only "
                             "grounded outputs update) | hybrid (everything every full_every frames and when "
                             "a query is not found, target in between)", runtime=True, consumer=SEGMENTATION,
                             choices=("everything", "target", "hybrid"))
    # One knob for both ways of filling the frames between full ones (they exclude each other: validate()).
    full_every: int = knob(10, "one full frame every this many frames, the others target frames (segmentation "
                           "hybrid) or the locked target carried by SAM2 (target_tracking sam2); 1 = always full",
                           range=(1, 10000), runtime=True, consumer=SEGMENTATION)
    target_points: int = knob(3, "target mode: positive points per query, the patch map's highest peaks",
                              range=(1, 16), runtime=True, consumer=SEGMENTATION)
    target_negatives: int = knob(2, "target mode: negative points per query, from the map's lowest cells",
                                 range=(0, 16), runtime=True, consumer=SEGMENTATION)

    def resolved(self) -> "PipelineConfig":
        """The same config with family-dependent defaults filled in (what actually runs)."""
        if self.global_weight is not None:
            return self
        from .encoders import family_for  # late: encoders import open_clip

        return dataclasses.replace(self, global_weight=family_for(self.encoder_model).default_global_weight)

    def replace(self, **overrides: Any) -> "PipelineConfig":
        overrides = renamed(overrides)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        cfg = dataclasses.replace(self, **overrides)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        check(self)  # every row's range and choices
        if self.sam2_input_size % 64 != 0:
            raise ValueError("sam2_input_size must be a multiple of 64 and at least 256")
        check_labels(self.vocabulary, "vocabulary")
        check_labels(self.background, "background")
        if len(self.vocabulary) + len(self.background) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels (vocabulary + background), got "
                             f"{len(self.vocabulary) + len(self.background)}")
        parse_tiles(self.tiles)  # raises with the reason
        if self.tiles == "none" and not self.use_global_view:
            raise ValueError("with tiles 'none' the global view is required")
        if self.target_tracking == "sam2" and self.mask_source != "sam2":
            raise ValueError("target_tracking sam2 needs mask_source sam2")
        if self.segmentation != "everything" and self.mask_source != "sam2":
            raise ValueError(f"segmentation {self.segmentation} needs mask_source sam2 (its prompt decoder)")
        providers = self.onnx_providers
        if not isinstance(providers, (tuple, list)) or any(p not in PROVIDERS for p in providers):
            raise ValueError(f"onnx_providers must be a list of {', '.join(PROVIDERS)}, got {self.onnx_providers!r}")
        if self.sam2_backend == "onnxruntime" and self.mask_source != "sam2":
            raise ValueError("sam2_backend onnxruntime needs mask_source sam2")
        if self.segmentation != "everything" and self.target_tracking != "none":
            raise ValueError(f"segmentation {self.segmentation} and target_tracking {self.target_tracking} both "
                             f"decide what happens between full frames: choose one")

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


# Named presets, derived from the rows: "paper" is the defaults (the TextRegion reference: SAM2.1-L,
# 16x16 points, ViT-L/14@336 multi-resolution with the official tiling and the semantic-segmentation
# head); "realtime" is the node's default, camera frame rate on one GPU (SAM2 at 512: its decoder's
# upscaling dominates at 1024, and 128x128 masks are finer than the 28x28 token grid); "cpu-lite"
# is for no GPU (fewer points, a global view only).
PRESET_NAMES = ("paper", "realtime", "cpu-lite")
PRESETS: Dict[str, Dict[str, Any]] = {name: knobs.preset_values(PipelineConfig, name) for name in PRESET_NAMES}


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


# Old knob names kept for one release: each still works, with a warning naming its successor.
DEPRECATED = {"hybrid_every": "full_every", "propagate_every": "full_every"}


def renamed(values: Dict[str, Any], warn=None) -> Dict[str, Any]:
    """``values`` with deprecated names moved to their successors (a successor also given wins); ``warn``
    takes each message (Python's DeprecationWarning by default)."""
    old = [k for k in values if k in DEPRECATED]
    if not old:
        return values
    out = {k: v for k, v in values.items() if k not in DEPRECATED}
    for k in old:
        new = DEPRECATED[k]
        text = f"{k} is deprecated and will be removed: use {new}" + ("" if new not in out else f" ({new} given too wins)")
        if warn is None:
            warnings.warn(text, DeprecationWarning, stacklevel=3)
        else:
            warn(text)
        out.setdefault(new, values[k])
    return out


def preset(name: str, **overrides: Any) -> PipelineConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PipelineConfig().replace(**{**PRESETS[name], **overrides})
