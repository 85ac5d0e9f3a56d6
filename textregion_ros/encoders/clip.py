"""CLIP ViT (OpenAI and LAION tags) through open_clip's VisionTransformer.

The region token replaces the CLS row of the last block's attention with the
region's soft mask: a weighted *sum* of value vectors, then ``out_proj``,
``ln_post`` and ``proj``. The residual is dropped. The MLP runs only in the
official referring head (``use_mlp``), as ``x + mlp(ln_2(x))``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..pooling import mask_pool_sum
from .base import ImageTextEncoder, ValueFeatures, attention_weights, check_pixels, first, split_heads


class ClipEncoder(ImageTextEncoder):
    family = "clip"
    default_global_weight = 1.0
    mask_pooling = "sum"
    default_mean = (0.48145466, 0.4578275, 0.40821073)
    default_std = (0.26862954, 0.26130258, 0.27577711)
    default_interpolation = "bicubic"

    @staticmethod
    def handles(model_name: str) -> bool:
        return model_name.startswith("ViT-") and "SigLIP" not in model_name

    def __init__(self, model, model_name, tokenizer=None, meta=None):
        visual = model.visual
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError(f"{model_name}: only CLS-token pooled ViTs are supported by the CLIP family")
        super().__init__(model, model_name, tokenizer, meta)
        self.visual = visual
        self.last = visual.transformer.resblocks[-1]

    @property
    def image_size(self) -> int:
        return first(self.visual.image_size)

    @property
    def patch_size(self) -> int:
        return first(self.visual.patch_size)

    @property
    def num_prefix(self) -> int:
        return 1

    def torch_values(self, pixels: torch.Tensor) -> ValueFeatures:
        check_pixels(pixels, self.image_size)
        x = self.visual._embeds(pixels.to(self.dtype))
        batch_first = getattr(self.visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in self.visual.transformer.resblocks[:-1]:
            x = block(x)
        if not batch_first:
            x = x.transpose(0, 1)
        attn = self.last.attn
        width = x.shape[-1]
        values = F.linear(self.last.ln_1(x), attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
        return ValueFeatures(values=values, num_prefix=1, grid=self.grid, block_input=x)

    def pool(self, values: torch.Tensor, weights: torch.Tensor,
             residual: Optional[torch.Tensor] = None, use_mlp: bool = False) -> torch.Tensor:
        x = self.last.ls_1(self.last.attn.out_proj(mask_pool_sum(values, weights)))
        if residual is not None:
            x = residual + x
        if use_mlp:
            x = x + self.last.ls_2(self.last.mlp(self.last.ln_2(x)))
        return self.visual.ln_post(x) @ self.visual.proj

    def dense_embeddings(self, feats: ValueFeatures) -> torch.Tensor:
        """(B, N, E) unit embeddings of every patch from the last block run with SCLIP's correlative
        self-attention (softmax(q q^T) + softmax(k k^T)). The official semantic evaluation fills the
        pixels no region covers with their class logits (model_semantic.py ``get_CLIP_logits``)."""
        blk, attn = self.last, self.last.attn
        x = feats.block_input
        q, k, v = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        heads = attn.num_heads
        q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)
        scale = q.shape[-1] ** -0.5
        w = torch.softmax((q @ q.transpose(-1, -2)) * scale, -1) + torch.softmax((k @ k.transpose(-1, -2)) * scale, -1)
        out = (w @ v).transpose(1, 2).reshape(x.shape)
        x = x + blk.ls_1(attn.out_proj(out))
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        return F.normalize((self.visual.ln_post(x[:, feats.num_prefix:]) @ self.visual.proj).float(), dim=-1)

    def own_attention(self, feats: ValueFeatures) -> torch.Tensor:
        """The model's CLS attention over all tokens in the last block, (B, H, N)."""
        attn = self.last.attn
        x = self.last.ln_1(feats.block_input)
        width = x.shape[-1]
        q = F.linear(x[:, :1], attn.in_proj_weight[:width], attn.in_proj_bias[:width])
        k = F.linear(x, attn.in_proj_weight[width:2 * width], attn.in_proj_bias[width:2 * width])
        return attention_weights(q, k, attn.num_heads)

    def own_residual(self, feats: ValueFeatures) -> torch.Tensor:
        return feats.block_input[:, 0]
