"""Shared head code for families that pool with timm's AttentionPoolLatent ("MAP").

SigLIP2 and Perception Encoder both end in a latent-query attention pool. The
official code fuses resolutions and scores global patches on the pool's
*inputs*, then applies the pool's value projection. A region token runs that
pool with attention that is uniform over the patches inside the mask (the
reference's constant key), skips the pool's MLP, then applies the remaining
projection and norms. Because the value projection is affine and the
attention sums to one, the inputs are pooled first and projected once per
region: W (sum_i a_i x_i) + b = sum_i a_i (W x_i + b).
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import ImageTextEncoder, ValueFeatures, attention_weights, check_pixels, first


class AttentionPoolEncoder(ImageTextEncoder):
    mask_pooling = "uniform"
    default_global_weight = 0.5
    # Whether the trunk feeds its prefix (CLS) tokens to the pool.
    pool_includes_prefix = False

    def __init__(self, model, model_name, tokenizer=None, meta=None):
        super().__init__(model, model_name, tokenizer, meta)
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

    @property
    def num_prefix(self) -> int:
        return self.trunk.num_prefix_tokens if self.pool_includes_prefix else 0

    def torch_values(self, pixels: torch.Tensor) -> ValueFeatures:
        check_pixels(pixels, self.image_size)
        x = self.trunk.forward_features(pixels.to(self.dtype))
        prefix = self.trunk.num_prefix_tokens
        if not self.pool_includes_prefix:
            x, prefix = x[:, prefix:], 0
        if self.head.pos_embed is not None:
            x = x + self.head.pos_embed.unsqueeze(0).to(x.dtype)
        return ValueFeatures(values=x, num_prefix=prefix, grid=self.grid, block_input=x)

    def value_projection(self, pooled: torch.Tensor, weight_sum: torch.Tensor) -> torch.Tensor:
        """The pool's value projection of attention-pooled inputs: (R, C) or per head (R, H, C) -> (R, C)."""
        c = self.head.kv.out_features // 2
        w_v, b_v = self.head.kv.weight[c:], self.head.kv.bias
        b_v = b_v[c:] if b_v is not None else None
        if pooled.ndim == 2:
            out = pooled @ w_v.T.to(pooled.dtype)
            return out if b_v is None else out + weight_sum[:, None] * b_v.to(out.dtype)
        r, h, _ = pooled.shape
        d = c // h
        per_head = torch.einsum("rhc,hdc->rhd", pooled, w_v.view(h, d, -1).to(pooled.dtype))
        if b_v is not None:
            per_head = per_head + weight_sum[..., None] * b_v.view(h, d).to(per_head.dtype)
        return per_head.reshape(r, c)

    def pool(self, values: torch.Tensor, weights: torch.Tensor,
             residual: Optional[torch.Tensor] = None, use_mlp: bool = False) -> torch.Tensor:
        """values: the pool's inputs (N, C); weights (R, N) or per head (R, H, N)."""
        w = weights.to(values.dtype)
        pooled = w @ values if w.ndim == 2 else torch.einsum("rhn,nc->rhc", w, values)
        x = self.head.proj_drop(self.head.proj(self.value_projection(pooled, w.sum(-1))))
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
