"""Where open_clip weights come from, what their pretrained tag says about them, and the errors.

Weights are an open_clip pretrained tag (fetched from the hub and cached), a local checkpoint
path, or, only when asked for by name, random. A tag carries metadata the weights were trained
with: the activation (OpenAI's CLIP uses QuickGELU while open_clip's ``ViT-B-16`` config builds
GELU), the normalisation mean/std and the resize interpolation. We apply it the way
``open_clip.create_model_and_transforms`` does, also to random weights built for a tag, so tests
run the architecture users run.
"""
from __future__ import annotations

import contextlib
import logging

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import open_clip
import torch


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found or loaded; never silently replaced by random ones."""


@dataclass(frozen=True)
class TagMetadata:
    """What a pretrained tag says about its weights (empty for a local checkpoint)."""
    tag: Optional[str] = None
    quick_gelu: bool = False
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    interpolation: Optional[str] = None  # "bicubic" | "bilinear"
    resize_mode: Optional[str] = None


def tag_metadata(model_name: str, tag: Optional[str]) -> TagMetadata:
    if not tag:
        return TagMetadata()
    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    return TagMetadata(tag=tag, quick_gelu=bool(cfg.get("quick_gelu", False)),
                       mean=tuple(cfg["mean"]) if "mean" in cfg else None,
                       std=tuple(cfg["std"]) if "std" in cfg else None,
                       interpolation=cfg.get("interpolation"), resize_mode=cfg.get("resize_mode"))


def resolve_weights(model_name: str, weights: str, random_weights: bool) -> Tuple[Optional[str], Optional[str]]:
    """-> (open_clip ``pretrained`` argument: a tag, a path or None for random; the tag whose metadata applies)."""
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    expanded = os.path.expanduser(weights) if weights else ""
    if expanded and os.path.isfile(expanded):
        return (None if random_weights else expanded), None
    if weights and weights not in tags:
        if random_weights:
            return None, None
        if os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
            raise WeightsUnavailableError(f"checkpoint file not found: {weights}")
        raise WeightsUnavailableError(f"{weights!r} is not a pretrained tag of {model_name}; known tags: {tags}")
    tag = weights or (tags[0] if tags else None)
    if tag is None and not random_weights:
        raise WeightsUnavailableError(f"{model_name} has no open_clip pretrained tag; give a checkpoint path")
    return (None if random_weights else tag), tag


def fetch_open_clip(model_name: str, weights: str = "", random_weights: bool = False) -> None:
    """Make sure the weights file is local (download it or find it in the cache) without building the
    model, so every missing source can be named in one message (``hub.fetch_weights``)."""
    pretrained, tag = resolve_weights(model_name, weights, random_weights)
    if pretrained is None or pretrained != tag:  # random, or a local file that exists
        return
    try:
        open_clip.download_pretrained(open_clip.get_pretrained_cfg(model_name, tag))
    except Exception as exc:  # huggingface_hub and urllib raise many types for missing downloads
        raise WeightsUnavailableError(_missing(model_name, pretrained, exc)) from exc


def _missing(model_name: str, pretrained: str, exc: Exception) -> str:
    return (f"could not load weights {pretrained!r} for open_clip model {model_name}: {exc}\n"
            f"Weights for a pretrained tag are downloaded from the Hugging Face hub on first use and "
            f"cached under $HF_HOME. Offline, download them on a connected machine "
            f"(python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\") "
            f"and copy the cache, or pass a local checkpoint path as the encoder weights.")


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init(random_weights: bool):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" on the root logger when asked for
    random weights; the node has said so already in its own words (its RANDOM WEIGHTS banner)."""
    if not random_weights:
        yield
        return
    notice = _DropRandomInitNotice()
    logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice)


def load_open_clip(model_name: str, weights: str = "", random_weights: bool = False,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                   ) -> Tuple[torch.nn.Module, object, TagMetadata]:
    """-> (model in eval mode on device/dtype, tokenizer or None, the tag's metadata)."""
    pretrained, tag = resolve_weights(model_name, weights, random_weights)
    meta = tag_metadata(model_name, tag)
    try:
        # force_quick_gelu follows the tag, as create_model_and_transforms would have it; without it
        # open_clip builds GELU for the OpenAI tags and only warns.
        with _quiet_random_init(random_weights):
            model = open_clip.create_model(model_name, pretrained=pretrained, device=device,
                                           force_quick_gelu=meta.quick_gelu)
    except Exception as exc:  # open_clip raises many types for missing or broken downloads
        raise WeightsUnavailableError(_missing(model_name, str(pretrained), exc)) from exc
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception:  # SigLIP2's tokenizer lives on the hub; text can still be encoded from ids
        tokenizer = None
    return model, tokenizer, meta
