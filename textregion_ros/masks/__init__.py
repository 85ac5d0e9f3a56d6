"""Mask sources behind one interface (base.MaskSource), created by name from the ``SOURCES`` registry.

Adding a source is one file whose class has ``from_config(config, device)``, plus its row in registry.py.
"""
from __future__ import annotations

import importlib

from .base import MaskSet, MaskSource, boxes_from_masks, dilate
from .given import GivenMasks, given_masks
from .registry import SOURCES
from .superpixels import Superpixels

__all__ = ["GivenMasks", "MaskSet", "MaskSource", "SOURCES", "Superpixels", "boxes_from_masks",
           "create_mask_source", "dilate", "given_masks"]


def create_mask_source(config, device) -> MaskSource:
    """The mask source named by ``config.mask_source`` (a PipelineConfig), built from the config."""
    if config.mask_source not in SOURCES:
        raise ValueError(f"unknown mask_source {config.mask_source!r}; choose one of {sorted(SOURCES)}")
    module, cls = SOURCES[config.mask_source]
    # Imported when chosen: a source's own dependencies (sam2) load only when it is used.
    return getattr(importlib.import_module(f".{module}", __name__), cls).from_config(config, device)
