"""Backends of the exported units: torch (the models as built) or ONNX Runtime running exported graphs.

    textregion-export --preset cpu-lite            # once: graphs + manifests under onnx_dir
    Pipeline(preset("cpu-lite", sam2_backend="onnxruntime", encoder_backend="onnxruntime"))

Only the units replace torch: SAM2's image encoder and prompt decoder (Sam2Everything.image_graph and
prompt_graph) and the encoder family's image trunk (ImageTextEncoder.trunk_graph). Pooling, filters,
fusion, grounding and the text tower stay as they are. ``onnxruntime`` fails when a graph is missing,
stale or unloadable, with the reason and the export command; ``auto`` uses the graphs where they were
measured faster (the CPU: bench/reports/cpu2core-onnxruntime.json) and present, and says so in one line.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable, Dict, List, Optional

from ..config import DEFAULT_PROVIDERS
from ..masks.sam2_build import sam2_size
from .manifest import GRAPH, GraphUnavailableError, Manifest, file_sha256, root_of, unit_dir, weights_fingerprint

# Where auto picks onnxruntime: the device types on which every unit was measured faster there.
MEASURED_FASTER = {"cpu"}


def export_command(config, units: List[str]) -> str:
    """The textregion-export line that makes the graphs ``config`` needs."""
    keys = ["sam2_model", "sam2_weights", "sam2_input_size"] if "trunk" not in units or len(units) > 1 else []
    keys += ["encoder_model", "encoder_weights"] if "trunk" in units else []
    keys += ["random_weights"] if config.random_weights else []
    sets = " ".join(f"--set {k}={getattr(config, k)}" for k in keys if getattr(config, k) != "")
    where = f" --onnx-dir {config.onnx_dir}" if config.onnx_dir else ""
    return f"ros2 run textregion_ros textregion-export --units {' '.join(units)} {sets}{where}"


def choose(wanted: str, device_type: str) -> str:
    if wanted == "auto":
        return "onnxruntime" if device_type in MEASURED_FASTER else "torch"
    return wanted


def load_unit(config, unit: str, model: str, input_size: int, fingerprint: Callable[[], str], device,
              dtype: str = "fp32"):
    """The OrtUnit of one exported unit, checked against what the config builds; GraphUnavailableError else.
    ``fingerprint`` is called only when a manifest is there (it reads every weight once)."""
    from .ort import OrtUnit, open_session

    directory = unit_dir(root_of(config.onnx_dir), unit, model, input_size, dtype)
    found = Manifest.read(directory)
    wanted = Manifest(unit=unit, model=model, weights="", weights_fingerprint=fingerprint(), input_size=input_size,
                      dtype=dtype, opset=found.opset)
    stale = found.mismatches(wanted)
    if stale:
        raise GraphUnavailableError(f"the graph in {directory} is stale: " + "; ".join(stale))
    path = os.path.join(directory, GRAPH)
    # The manifest vouches for one file: a graph truncated or replaced since the export is not that file.
    if not os.path.isfile(path) or file_sha256(path) != found.graph_sha256:
        raise GraphUnavailableError(f"{path} does not match its manifest (missing, truncated or replaced since "
                                    f"it was exported)")
    unit_ = OrtUnit(open_session(path, config.onnx_providers or DEFAULT_PROVIDERS, device), device)
    if (unit_.inputs, unit_.outputs) != (found.inputs, found.outputs):
        raise GraphUnavailableError(f"{path} takes {unit_.inputs} and gives {unit_.outputs}; a {unit} graph "
                                    f"takes {found.inputs} and gives {found.outputs}")
    return unit_


def attach_graphs(config, encoder, mask_source, log: Optional[Callable[[str], None]] = None) -> Dict[str, str]:
    """Put the exported graphs in place per ``sam2_backend`` and ``encoder_backend`` -> {model: backend used}."""
    log = log or logging.getLogger("textregion_ros").info
    device = config.torch_device()
    used: Dict[str, str] = {}
    sam = mask_source if hasattr(mask_source, "image_graph") else None
    plans = [("encoder", config.encoder_backend, ["trunk"])] if encoder is not None else []
    if sam is not None:
        plans.insert(0, ("sam2", config.sam2_backend, ["sam2_image", "sam2_prompt"]))
    for name, wanted, units in plans:
        used[name] = choose(wanted, device.type)
        if used[name] == "torch":
            continue
        try:
            graphs = _load(config, name, units, encoder, sam, device)
        except GraphUnavailableError as exc:
            hint = f"{exc}. Export the graphs: {export_command(config, units)}"
            if wanted == "onnxruntime":
                raise GraphUnavailableError(f"{name}_backend onnxruntime: {hint}") from exc
            used[name] = "torch"
            log(f"{name}_backend auto: torch ({hint})")
            continue
        if name == "sam2":
            sam.image_graph, sam.prompt_graph = graphs
        else:
            encoder.trunk_graph = graphs[0]
        log(f"{name}_backend {wanted}: onnxruntime ({', '.join(graphs[0].session.get_providers())})")
    return used


def _load(config, name, units, encoder, sam, device) -> list:
    if name == "sam2":
        fp = functools.lru_cache(None)(lambda: weights_fingerprint(sam.model))
        return [load_unit(config, u, sam2_size(config.sam2_model), sam.input_size, fp, device) for u in units]
    return [load_unit(config, "trunk", config.encoder_model, encoder.image_size,
                      lambda: weights_fingerprint(encoder.model.visual), device)]


__all__ = ["GraphUnavailableError", "attach_graphs", "export_command"]
