"""Building a SAM2 model by size, from its Hugging Face id or a local checkpoint."""
from __future__ import annotations

import os
import warnings
from typing import Optional, Tuple

import torch

from ..encoders.weights import WeightsUnavailableError

# sam2 scripts its input transforms with torch.jit (SAM2Transforms), which torch 2.14 deprecates with a
# FutureWarning on every model build: nothing a user of this package can act on, so it is not shown.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

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


def sam2_source(name: str, weights: str = "") -> Tuple[str, str, str]:
    """-> (sam2 config, Hugging Face repo id or "" for a local file, checkpoint file name or local path).

    ``weights``: "" (the size's facebook/sam2.1-hiera-* id), a local .pt path, or any Hugging Face id
    whose repo holds a checkpoint under sam2's file name for this size (a fine-tune of it)."""
    config, hf_id = SAM2_MODELS[sam2_size(name)]
    path = os.path.expanduser(weights)
    if weights and os.path.isfile(path):
        return config, "", path
    hub_id = weights.count("/") == 1 and not weights.startswith(("/", ".", "~")) and not weights.endswith(".pt")
    if weights and not hub_id:
        raise WeightsUnavailableError(f"SAM2 checkpoint not found: {weights} (give a local .pt file or a "
                                      f"Hugging Face id such as {hf_id})")
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    model_id = weights or hf_id
    known = HF_MODEL_ID_TO_FILENAMES.get(model_id)  # sam2's own ids carry their config (sam2 or sam2.1)
    return (known[0], model_id, known[1]) if known else (config, model_id, HF_MODEL_ID_TO_FILENAMES[hf_id][1])


def fetch_sam2(name: str, weights: str = "", random_weights: bool = False) -> Tuple[str, Optional[str]]:
    """-> (sam2 config, local checkpoint path or None for random): downloaded or found in the cache."""
    if random_weights:
        return SAM2_MODELS[sam2_size(name)][0], None
    config, model_id, file = sam2_source(name, weights)
    if not model_id:
        return config, file
    from huggingface_hub import hf_hub_download

    try:
        return config, hf_hub_download(repo_id=model_id, filename=file)
    except Exception as exc:  # huggingface_hub raises many types for missing repos, files and networks
        raise WeightsUnavailableError(
            f"could not obtain SAM2 weights {model_id} ({file}): {exc}\n"
            f"They are downloaded from the Hugging Face hub on first use. Offline, download "
            f"{model_id} on a connected machine (huggingface-cli download {model_id} {file}) and copy the "
            f"cache, or pass the .pt checkpoint path as the SAM2 weights.") from exc


# TextRegion builds SAM2 with apply_postprocessing=False: no dynamic multimask switching and no hole
# filling, so the decoder's raw multimask outputs reach the filters.
def build_sam2_model(name: str, weights: str = "", random_weights: bool = False,
                     device: torch.device | str = "cpu") -> torch.nn.Module:
    """SAM2 by size. ``weights``: "" (the size's HF id), an HF id, or a local .pt path."""
    from sam2.build_sam import build_sam2

    config, path = fetch_sam2(name, weights, random_weights)
    try:
        return build_sam2(config, path, device=str(device), apply_postprocessing=False)
    except Exception as exc:
        raise WeightsUnavailableError(f"could not load SAM2 checkpoint {path} as {config}: {exc}") from exc
