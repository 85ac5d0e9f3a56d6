"""Image-text encoders, one file per family, created by name like open_clip models.

    enc = create_encoder("ViT-B-16", weights="openai")          # CLIP
    enc = create_encoder("ViT-B-16-SigLIP2", weights="webli")   # SigLIP2
    enc = create_encoder("PE-Core-B-16", random_weights=True)   # PE, random (tests)
"""
from __future__ import annotations

from typing import List, Type

import torch

from .attention_pool import AttentionPoolEncoder
from .base import ImageTextEncoder, ValueFeatures
from .clip import ClipEncoder
from .pe import PEEncoder
from .siglip2 import SigLIP2Encoder
from .weights import WeightsUnavailableError, load_open_clip

# Most specific first: a family claims a model by its open_clip name.
FAMILIES: List[Type[ImageTextEncoder]] = [SigLIP2Encoder, PEEncoder, ClipEncoder]


def family_for(model_name: str) -> Type[ImageTextEncoder]:
    for cls in FAMILIES:
        if cls.handles(model_name):
            return cls
    raise ValueError(f"no encoder family handles {model_name!r}; supported: CLIP 'ViT-*', "
                     f"SigLIP2 'ViT-*-SigLIP2*', Perception Encoder 'PE-Core-*'")


def create_encoder(model_name: str, weights: str = "", random_weights: bool = False,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> ImageTextEncoder:
    cls = family_for(model_name)
    model, tokenizer, meta = load_open_clip(model_name, weights, random_weights, device, dtype)
    return cls(model, model_name, tokenizer=tokenizer, meta=meta)


__all__ = ["AttentionPoolEncoder", "ClipEncoder", "FAMILIES", "ImageTextEncoder", "PEEncoder",
           "SigLIP2Encoder", "ValueFeatures", "WeightsUnavailableError", "create_encoder", "family_for"]
