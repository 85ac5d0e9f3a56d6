"""The image-text encoder seam: what the pipeline needs from CLIP, SigLIP2 or PE.

A family file subclasses ``ImageTextEncoder`` and implements two methods over
the open_clip model it wraps:

* ``encode_values(pixels)`` returns, for every token of every view (prefix
  tokens first), the features TextRegion fuses across resolutions and scores
  for global patches: CLIP's last-block value projections, or the inputs of
  SigLIP2's / PE's attention pool (the official code applies the pool's
  key/value projection only after fusion and removal);
* ``pool(values, weights, ...)`` runs the family's pooling head with the given
  attention weights in place of the model's own CLS/probe attention.

Region tokens, multi-resolution fusion and global patch removal are shared
(pooling.py, tokens.py) and family-agnostic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..pooling import uniform_in_mask
from .text_tower import causal_eot_tower, encode_to_eot
from .weights import TagMetadata


@dataclass
class ValueFeatures:
    values: torch.Tensor  # (B, P + N, C) value features, P prefix tokens first
    num_prefix: int
    grid: int  # patches per side of one view
    # The last block's input tokens: the attention pool (SigLIP2, PE) reads them,
    # and the evaluation's CLIP fill runs the CSA block on them (dense_embeddings).
    block_input: Optional[torch.Tensor] = None

    @property
    def patch_values(self) -> torch.Tensor:
        return self.values[:, self.num_prefix:]


class ImageTextEncoder:
    """Shared state and text side; subclasses add the family's vision internals."""

    family: str = ""
    # Weight of the global view's upsampled value map in multi-resolution fusion.
    default_global_weight: float = 1.0
    # What the family's head does with a region's soft mask (see region_attention).
    mask_pooling: str = "sum"  # "sum" (CLIP) | "uniform" (attention-pool heads)
    # Preprocessing when no pretrained tag says otherwise (the official code's choices per family).
    default_mean: Sequence[float] = (0.5, 0.5, 0.5)
    default_std: Sequence[float] = (0.5, 0.5, 0.5)
    default_interpolation: str = "bicubic"

    def __init__(self, model: torch.nn.Module, model_name: str, tokenizer=None,
                 meta: Optional[TagMetadata] = None):
        meta = meta or TagMetadata()
        self.model = model
        self.model_name = model_name
        self.meta = meta
        self._tokenizer = tokenizer
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.mean = torch.tensor(meta.mean or self.default_mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(meta.std or self.default_std, device=self.device).view(1, 3, 1, 1)
        # torchvision v2.Resize(antialias=True) with this mode, as the official preprocessing.
        self.interpolation = meta.interpolation or self.default_interpolation
        self._eot_tower = causal_eot_tower(model)  # None: the tower's own full-context forward
        self.trunk_graph = None  # an exported image trunk (backends/) in place of torch_values, or None

    # --- geometry -------------------------------------------------------
    @property
    def image_size(self) -> int:
        raise NotImplementedError

    @property
    def patch_size(self) -> int:
        raise NotImplementedError

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float images in [0, 1] -> model input."""
        return ((images01 - self.mean) / self.std).to(self.dtype)

    @property
    def num_prefix(self) -> int:
        """Prefix (CLS) tokens before the patches in encode_values' output."""
        raise NotImplementedError

    # --- vision ---------------------------------------------------------
    def encode_values(self, pixels: torch.Tensor) -> ValueFeatures:
        """Normalised views (B, 3, S, S) -> ValueFeatures, by the family's torch code or the exported graph
        that replaces it (backends/: ``trunk_graph`` takes the views, gives the values and block input)."""
        if self.trunk_graph is None:
            return self.torch_values(pixels)
        check_pixels(pixels, self.image_size)
        values, block_input = self.trunk_graph(pixels.to(self.dtype))
        return ValueFeatures(values=values, num_prefix=self.num_prefix, grid=self.grid, block_input=block_input)

    def torch_values(self, pixels: torch.Tensor) -> ValueFeatures:
        raise NotImplementedError

    def pool(self, values: torch.Tensor, weights: torch.Tensor,
             residual: Optional[torch.Tensor] = None, use_mlp: bool = False) -> torch.Tensor:
        """Run the pooling head with ``weights`` as its attention.

        values (N, C) for one view; weights (R, N) shared by all heads or
        (R, H, N) per head. ``residual`` (R, C) is what the model adds back
        around its attention (CLIP's CLS token), used for equivalence checks.
        Returns unnormalized embeddings (R, E).
        """
        raise NotImplementedError

    def region_attention(self, weights: torch.Tensor) -> torch.Tensor:
        """Patch weights (R, N) -> the attention the family's head uses."""
        return weights if self.mask_pooling == "sum" else uniform_in_mask(weights)

    def sigmoid_logit(self) -> Optional[Tuple[float, float]]:
        """(scale, bias) for sigmoid-trained models (SigLIP2: logit = exp(t) * cos + b); None otherwise.

        open_clip gives a model a ``logit_bias`` exactly when it was trained with the sigmoid loss.
        """
        bias = getattr(self.model, "logit_bias", None)
        if bias is None:
            return None
        return float(self.model.logit_scale.exp()), float(bias)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model's own image embedding (for checks); unnormalized."""
        return self.model.encode_image(pixels)

    # --- text -----------------------------------------------------------
    def tokenize(self, texts: List[str]) -> torch.Tensor:
        if self._tokenizer is None:
            raise RuntimeError(
                f"no tokenizer is available for {self.model_name}; it is fetched from the "
                "Hugging Face hub on first use (set HF_HOME to a cache that has it), or "
                "encode token ids directly with encode_token_ids()")
        return self._tokenizer(texts).to(self.device)

    def encode_token_ids(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(T, L) token ids -> (T, E) L2-normalized text embeddings."""
        ids = token_ids.to(self.device)
        out = self.model.encode_text(ids) if self._eot_tower is None else encode_to_eot(self._eot_tower, ids)
        return F.normalize(out.float(), dim=-1)

    def encode_text(self, texts: List[str]) -> torch.Tensor:
        return self.encode_token_ids(self.tokenize(texts))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, H, N, C/H)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def attention_weights(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention of queries (B, 1, C) over keys (B, N, C) -> (B, H, N)."""
    qh, kh = split_heads(q, heads), split_heads(k, heads)
    scale = qh.shape[-1] ** -0.5
    return torch.softmax((qh * scale) @ kh.transpose(-1, -2), dim=-1)[:, :, 0]


def check_pixels(pixels: torch.Tensor, size: int) -> None:
    if not torch.is_tensor(pixels) or pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be a (B, 3, {size}, {size}) tensor, got "
                         f"{tuple(pixels.shape) if torch.is_tensor(pixels) else type(pixels).__name__}")
    if tuple(pixels.shape[-2:]) != (size, size):
        raise ValueError(f"pixels must be {size}x{size}, got {tuple(pixels.shape[-2:])}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be a float tensor, got {pixels.dtype}")


def first(size) -> int:
    """open_clip and timm report sizes as ints or (h, w) pairs; we use square views."""
    return int(size[0]) if isinstance(size, (tuple, list)) else int(size)
