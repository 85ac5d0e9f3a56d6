"""Building a SAM2 model by size, from its Hugging Face id or a local checkpoint."""
from __future__ import annotations

import os

import torch

from ..encoders.weights import WeightsUnavailableError

# size -> (sam2 package config, Hugging Face model id)
SAM2_MODELS = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "facebook/sam2.1-hiera-tiny"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "facebook/sam2.1-hiera-small"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "facebook/sam2.1-hiera-base-plus"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "facebook/sam2.1-hiera-large"),
}
ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "base+": "base_plus", "l": "large",
           "hiera_t": "tiny", "hiera_s": "small", "hiera_b+": "base_plus", "hiera_l": "large"}


def sam2_size(name: str) -> str:
    size = ALIASES.get(name, name)
    if size not in SAM2_MODELS:
        raise ValueError(f"unknown SAM2 model {name!r}; choose one of {sorted(SAM2_MODELS)}")
    return size


# TextRegion builds SAM2 with apply_postprocessing=False: no dynamic multimask switching and no hole
# filling, so the decoder's raw multimask outputs reach the filters.
def build_sam2_model(name: str, weights: str = "", random_weights: bool = False,
                     device: torch.device | str = "cpu") -> torch.nn.Module:
    """SAM2 by size. ``weights``: "" (the size's HF id), an HF id, or a local .pt path."""
    from sam2.build_sam import build_sam2, build_sam2_hf

    config, hf_id = SAM2_MODELS[sam2_size(name)]
    if random_weights:
        return build_sam2(config, None, device=str(device), apply_postprocessing=False)
    path = os.path.expanduser(weights)
    if weights and os.path.isfile(path):
        try:
            return build_sam2(config, path, device=str(device), apply_postprocessing=False)
        except Exception as exc:
            raise WeightsUnavailableError(f"could not load SAM2 checkpoint {path} as {config}: {exc}") from exc
    if weights and not weights.startswith("facebook/"):
        raise WeightsUnavailableError(f"SAM2 checkpoint not found: {weights}")
    model_id = weights or hf_id
    try:
        return build_sam2_hf(model_id, device=str(device), apply_postprocessing=False)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"could not obtain SAM2 weights {model_id}: {exc}\n"
            f"They are downloaded from the Hugging Face hub on first use. Offline, download "
            f"{model_id} on a connected machine (huggingface-cli download {model_id}) and copy the "
            f"cache, or pass the .pt checkpoint path as the SAM2 weights.") from exc
