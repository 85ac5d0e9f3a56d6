"""SigLIP2 (open_clip ``ViT-*-SigLIP2*``): timm ViT trunk with a MAP head, no prefix tokens."""
from __future__ import annotations

from .attention_pool import AttentionPoolEncoder


class SigLIP2Encoder(AttentionPoolEncoder):
    family = "siglip2"
    pool_includes_prefix = False

    @staticmethod
    def handles(model_name: str) -> bool:
        return "SigLIP2" in model_name
