"""What an exported graph was made from, written beside it, and the check that it still fits the config.

Each unit (SAM2's image encoder, its prompt decoder, an encoder family's image trunk) is one directory
under ``onnx_dir`` named for the model and input size it was exported for, holding ``graph.onnx`` and
``manifest.json``. A manifest that does not match what the configuration would build is stale: loading
fails with the reason and the export command, never silently falls back to torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import torch

FORMAT = 1
GRAPH, MANIFEST = "graph.onnx", "manifest.json"
# What must match for a graph to stand in for the torch unit; the rest (versions, date) is for people.
MUST_MATCH = ("format", "unit", "model", "input_size", "dtype", "weights_fingerprint")


class GraphUnavailableError(RuntimeError):
    """An exported graph is missing, stale or cannot be loaded: the backend cannot run as configured."""


@dataclass
class Manifest:
    unit: str  # sam2_image | sam2_prompt | trunk
    model: str  # sam2 size or open_clip model name
    weights: str  # what the config named: a Hugging Face id, a tag, a path, or "random"
    weights_fingerprint: str  # of the weights as loaded (weights_fingerprint)
    input_size: int
    dtype: str  # fp32 | fp16
    opset: int
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    graph_sha256: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def write(self, directory: str) -> None:
        tmp = os.path.join(directory, MANIFEST + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(directory, MANIFEST))

    @classmethod
    def read(cls, directory: str) -> "Manifest":
        path = os.path.join(directory, MANIFEST)
        try:
            with open(path) as f:
                raw = json.load(f)
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            return cls(**known)
        except FileNotFoundError:
            raise GraphUnavailableError(f"no manifest at {path}") from None
        except (OSError, ValueError, TypeError) as exc:  # unreadable, not JSON, or missing fields
            raise GraphUnavailableError(f"unreadable manifest {path}: {exc}") from exc

    def mismatches(self, expected: "Manifest") -> List[str]:
        return [f"{k} is {getattr(self, k)!r}, the configuration needs {getattr(expected, k)!r}"
                for k in MUST_MATCH if getattr(self, k) != getattr(expected, k)]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A digest of a module's weights as loaded: each tensor's name, shape, sum and first values, on the CPU
    and rounded to bfloat16 first, so the fp32 model exported and the same weights loaded in bf16 on a GPU
    agree. It tells apart two checkpoints, a fine-tune and two random draws, in one pass of sums."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            flat = t.detach().reshape(-1).cpu()
            if flat.is_floating_point():
                flat = flat.to(torch.bfloat16).double()
            total = float(flat.double().sum()) if flat.numel() else 0.0
            h.update(f"{name}:{tuple(t.shape)}:{total!r}:".encode())
            h.update(flat[:8].numpy().tobytes())
    return h.hexdigest()[:32]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unit_dir(root: str, unit: str, model: str, input_size: int, dtype: str) -> str:
    """``<root>/<unit>-<model>-<size>-<dtype>``: one export serves every config that builds the same unit."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return os.path.join(root, f"{unit}-{safe}-{input_size}-{dtype}")


def default_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "textregion_ros", "onnx")


def root_of(onnx_dir: Optional[str]) -> str:
    return os.path.expanduser(onnx_dir) if onnx_dir else default_root()
