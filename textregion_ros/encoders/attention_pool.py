"""Shared head code for families that pool with timm's AttentionPoolLatent ("MAP").

SigLIP2 and Perception Encoder both end in a latent-query attention pool. A
region token runs that pool with attention that is uniform over the patches
inside the mask (the reference's constant key), skips the pool's MLP, then
applies the remaining projection and norms.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..pooling import mask_pool_sum
from .base import ImageTextEncoder, ValueFeatures, attention_weights, check_pixels, first


class AttentionPoolEncoder(ImageTextEncoder):
    mask_pooling = "uniform"
    default_global_weight = 0.5
    # Whether the trunk feeds its prefix (CLS) tokens to the pool.
    pool_includes_prefix = False

    def __init__(self, model, model_name, tokenizer=None, mean=None, std=None):
        super().__init__(model, model_name, tokenizer, mean or (0.5, 0.5, 0.5), std or (0.5, 0.5, 0.5))
        self.trunk = model.visual.trunk
        self.head = self.trunk.attn_pool
        if self.head is None:
            raise ValueError(f"{model_name}: expected an attention-pool ('map') head")

    @property
    def image_size(self) -> int:
        return first(self.model.visual.image_size)

    @property
    def patch_size(self) -> int:
        return first(self.trunk.patch_embed.patch_size)

    def encode_values(self, pixels: torch.Tensor) -> ValueFeatures:
        check_pixels(pixels, self.image_size)
        x = self.trunk.forward_features(pixels.to(self.dtype))
        prefix = self.trunk.num_prefix_tokens
        if not self.pool_includes_prefix:
            x, prefix = x[:, prefix:], 0
        if self.head.pos_embed is not None:
            x = x + self.head.pos_embed.unsqueeze(0).to(x.dtype)
        values = self.head.kv(x).chunk(2, dim=-1)[1]
        return ValueFeatures(values=values, num_prefix=prefix, grid=self.grid, block_input=x)

    def pool(self, values: torch.Tensor, weights: torch.Tensor,
             residual: Optional[torch.Tensor] = None, use_mlp: bool = False) -> torch.Tensor:
        x = self.head.proj_drop(self.head.proj(mask_pool_sum(values, weights)))
        if residual is not None:
            x = residual + x
        if use_mlp:
            x = x + self.head.mlp(self.head.norm(x))
        x = self.trunk.head(self.trunk.head_drop(self.trunk.fc_norm(x)))
        return self.model.visual.head(x)

    def own_attention(self, feats: ValueFeatures) -> torch.Tensor:
        """The pool's latent-query attention over the tokens it sees, (B, H, N)."""
        head, x = self.head, feats.block_input
        q = head.q(head.latent.expand(x.shape[0], -1, -1))
        k = head.kv(x).chunk(2, dim=-1)[0]
        if not isinstance(head.q_norm, torch.nn.Identity) or not isinstance(head.k_norm, torch.nn.Identity):
            raise NotImplementedError("q/k-normed attention pools are not supported")
        return attention_weights(q, k, head.num_heads)

    def own_residual(self, feats: ValueFeatures) -> Optional[torch.Tensor]:
        return None
