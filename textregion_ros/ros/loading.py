"""Loading the models for configure: every failure becomes a StartupError with its reason."""
from __future__ import annotations

import ctypes
import gc

import torch

from ..encoders.weights import WeightsUnavailableError
from ..files.hub import prefer_cache_when_offline, uses_hub
from ..pipeline import Pipeline


class StartupError(RuntimeError):
    pass


# What building models raises for a reason the user can act on (missing weights, a bad configuration).
LOAD_ERRORS = (WeightsUnavailableError, ValueError, RuntimeError)
# random_weights (tests, benchmarks) are drawn from this seed: two runs, or the perception and memory nodes,
# get the same models, so their outputs repeat and their text embeddings come from the disk cache.
RANDOM_WEIGHTS_SEED = 0


def seed_random_weights(config) -> None:
    if config.random_weights:
        torch.manual_seed(RANDOM_WEIGHTS_SEED)


def load_pipeline(config, logger) -> Pipeline:
    if uses_hub(config) and not prefer_cache_when_offline():
        logger.info("the model hub is not reachable: loading weights from the local cache only")
    sam2 = f", SAM2 {config.sam2_model}" if config.mask_source == "sam2" else f", masks {config.mask_source}"
    logger.info(f"loading models: {config.encoder_model} ({config.encoder_weights}){sam2}")
    seed_random_weights(config)
    try:
        return Pipeline(config, log=logger.info)
    except LOAD_ERRORS as exc:
        raise StartupError(str(exc)) from exc


def load_find_scores(config, logger):
    """textregion_memory's models: the text tower for find (find_scores.py), no SAM2."""
    from .find_scores import FindScores

    logger.info(f"loading the text tower of {config.encoder_model} ({config.encoder_weights}) for find")
    seed_random_weights(config)
    try:
        return FindScores(config)
    except LOAD_ERRORS as exc:
        raise StartupError(str(exc)) from exc


def release_free_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps freed arena memory otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def release_models() -> None:
    """After the last reference to a pipeline is gone: its tensors back to the OS and the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    release_free_memory()
