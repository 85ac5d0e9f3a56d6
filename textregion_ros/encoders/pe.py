"""Perception Encoder (open_clip ``PE-Core-*``): timm Eva trunk whose MAP head also sees the CLS token.

Region tokens pool over patches only, as the reference drops the CLS token
before its masked probe attention.
"""
from __future__ import annotations

from .attention_pool import AttentionPoolEncoder


class PEEncoder(AttentionPoolEncoder):
    family = "pe"
    pool_includes_prefix = True
    default_interpolation = "bilinear"  # the official PE preprocessing

    @staticmethod
    def handles(model_name: str) -> bool:
        return model_name.startswith("PE-Core")
