"""The text tower run only as far as the end-of-text token, where that gives the same embedding.

open_clip always runs the full context (77 tokens for CLIP, 32 for PE) although a label with its template is about ten.
For a tower that pools the end-of-text token (``argmax``: it has the highest id) under a causal mask,
a token's output depends only on the tokens before it, so cutting the batch's ids after its longest
end-of-text token changes nothing but the work: about a sixth of the matmuls and a fiftieth of the
attention. That is what a vocabulary costs at configure and at every runtime change of the labels.
SigLIP2's tower (no causal mask, last-token pool) and CoCa-style class tokens are not cut.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def causal_eot_tower(model: nn.Module) -> Optional[nn.Module]:
    """The module that holds the text tower's parts when it may be cut at end-of-text, else None.
    open_clip's CLIP keeps them on the model itself; CustomTextCLIP (PE) keeps them in ``model.text``."""
    tower = getattr(model, "text", model)
    pool = getattr(tower, "pool_type", getattr(tower, "text_pool_type", None))
    if pool != "argmax" or getattr(tower, "attn_mask", None) is None:
        return None
    if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
        return None
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    return tower if all(hasattr(tower, n) for n in needed) else None


def encode_to_eot(tower: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(T, L) token ids -> (T, E) unnormalized embeddings, as the tower's own forward gives them."""
    eot = ids.argmax(dim=-1)
    length = int(eot.max()) + 1
    ids = ids[:, :length]
    cast = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(ids).to(cast) + tower.positional_embedding[:length].to(cast)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)[torch.arange(len(ids), device=ids.device), eot]
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj
