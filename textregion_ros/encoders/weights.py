"""Where open_clip weights come from, and the errors when they can't be had.

Weights are an open_clip pretrained tag (fetched from the hub and cached), a
local checkpoint path, or, only when asked for by name, random.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import open_clip
import torch


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found or loaded; never silently replaced by random ones."""


def resolve_pretrained(model_name: str, weights: str, random_weights: bool) -> Optional[str]:
    """-> the ``pretrained`` argument for open_clip: a tag, a path, or None for random weights."""
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    if random_weights:
        return None
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if not weights:
        if not tags:
            raise WeightsUnavailableError(f"{model_name} has no open_clip pretrained tag; give a checkpoint path")
        return tags[0]
    if os.path.isfile(os.path.expanduser(weights)):
        return os.path.expanduser(weights)
    if weights in tags:
        return weights
    if os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise WeightsUnavailableError(f"checkpoint file not found: {weights}")
    raise WeightsUnavailableError(f"{weights!r} is not a pretrained tag of {model_name}; known tags: {tags}")


def load_open_clip(model_name: str, weights: str = "", random_weights: bool = False,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                   ) -> Tuple[torch.nn.Module, object, Optional[dict]]:
    """-> (model in eval mode on device/dtype, tokenizer or None, pretrained cfg or None)."""
    pretrained = resolve_pretrained(model_name, weights, random_weights)
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
    except Exception as exc:  # open_clip raises many types for missing or broken downloads
        raise WeightsUnavailableError(
            f"could not load weights {pretrained!r} for open_clip model {model_name}: {exc}\n"
            f"Weights for a pretrained tag are downloaded from the Hugging Face hub on first use and "
            f"cached under $HF_HOME. Offline, download them on a connected machine "
            f"(python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\") "
            f"and copy the cache, or pass a local checkpoint path as the encoder weights.") from exc
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception:  # SigLIP2's tokenizer lives on the hub; text can still be encoded from ids
        tokenizer = None
    cfg = None
    if isinstance(pretrained, str) and not os.path.isfile(pretrained):
        cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or None
    return model, tokenizer, cfg
