"""What the memory node needs of the models to answer ``find``: the text tower, and the same scoring rule as
grounding (classify.query_scores against the background labels), without SAM2 or the image pipeline.

The memory node loads only this (the image-text model's weights, once, for its text tower); the perception
node's Pipeline offers the same four members, so tests and a single process can share one set of models.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..classify import query_scores
from ..encoders import create_encoder
from ..encoders.text import LabelEmbeddings, TextEmbedder, text_cache_dir
from ..encoders.weights import fetch_open_clip
from ..pipeline import FALLBACK_BACKGROUND


class FindScores:
    """embed_queries, query_scores, fallback_background, config and device: the part of Pipeline find uses."""

    def __init__(self, config, encoder=None):
        config.validate()
        self.config, self.device = config, config.torch_device()
        if encoder is None:
            fetch_open_clip(config.encoder_model, config.encoder_weights, config.random_weights)
            encoder = create_encoder(config.encoder_model, config.encoder_weights, config.random_weights,
                                     self.device, config.torch_dtype())
        self.encoder = encoder
        disk = text_cache_dir(encoder, config.encoder_model, config.encoder_weights, config.templates,
                              config.random_weights)
        self.text = TextEmbedder(encoder, config.templates, disk_dir=disk)
        self.fallback_background = self.text.embed_labels(FALLBACK_BACKGROUND)
        self.background: Optional[LabelEmbeddings] = (self.text.embed_labels(config.background)
                                                      if config.background else None)

    def embed_queries(self, queries) -> LabelEmbeddings:
        return self.text.embed_labels(queries)

    def query_scores(self, tokens: torch.Tensor, queries: LabelEmbeddings):
        return query_scores(tokens, queries, self.background or self.fallback_background,
                            self.config.region_logit_scale, self.encoder.sigmoid_logit())
