"""ONNX Runtime sessions for exported units: providers in order of preference, and torch in, torch out.

``onnx_providers`` names them (cpu, cuda, tensorrt, openvino). One that is not installed is reported once
and the next is used; when none of them is installed, loading fails with the reason. On CUDA the inputs
and outputs are bound to torch's own device memory (ONNX Runtime's I/O binding), so tensors stay on the
GPU; on the CPU they are shared with numpy without a copy.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .manifest import GraphUnavailableError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_reported: set = set()  # providers already reported missing (once per process)
_log = logging.getLogger("textregion_ros.backends")


GPU_PROVIDERS = ("cuda", "tensorrt")


def choose_providers(wanted: Sequence[str], available: Sequence[str], device_type: str = "cuda",
                     report: Optional[Callable[[str], None]] = None) -> List[str]:
    """The installed ones of ``wanted``, in its order, as ONNX Runtime names; each missing one reported once.
    On a CPU device the GPU providers are passed over without a word: the pipeline's tensors are on the host."""
    report = report or _log.warning
    out = []
    for name in wanted:
        ort_name = PROVIDERS.get(name)
        if ort_name is None:
            raise GraphUnavailableError(f"unknown ONNX Runtime provider {name!r}; choose from {sorted(PROVIDERS)}")
        if device_type != "cuda" and name in GPU_PROVIDERS:
            continue
        if ort_name in available:
            out.append(ort_name)
        elif name not in _reported:
            _reported.add(name)
            report(f"ONNX Runtime provider {name} ({ort_name}) is not installed here; using the next of "
                   f"onnx_providers {list(wanted)} (installed: {list(available)})")
    if not out:
        raise GraphUnavailableError(f"none of onnx_providers {list(wanted)} is installed in ONNX Runtime for a "
                                    f"{device_type} device "
                                    f"(installed: {list(available)}); install onnxruntime-gpu for cuda and "
                                    f"tensorrt, onnxruntime-openvino for openvino")
    return out


def _provider_options(name: str, device: torch.device) -> Dict[str, str]:
    if name in (PROVIDERS["cuda"], PROVIDERS["tensorrt"]) and device.type == "cuda":
        return {"device_id": str(device.index or 0)}
    return {}


def open_session(path: str, wanted: Sequence[str], device: torch.device, threads: int = 0):
    """An InferenceSession for ``path``, or GraphUnavailableError naming what is wrong with it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise GraphUnavailableError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    if not os.path.isfile(path):
        raise GraphUnavailableError(f"no graph at {path}")
    providers = choose_providers(wanted, ort.get_available_providers(), device.type)
    opts = ort.SessionOptions()
    # The pipeline shares the machine with the node's other threads and processes: as many threads as torch
    # was given, not ONNX Runtime's default of every core (measured 0.64x when other processes were busy).
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, sess_options=opts,
                                    providers=[(p, _provider_options(p, device)) for p in providers])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
        raise GraphUnavailableError(f"ONNX Runtime could not load {path}: {str(exc).strip()[:400]}") from exc


_NP = {torch.float32: np.float32, torch.float16: np.float16, torch.int32: np.int32, torch.int64: np.int64}


class OrtUnit:
    """One exported unit as a callable: torch tensors in the graph's input order -> a tuple of torch tensors.

    On CUDA (``bound``) the inputs and outputs are torch's device memory, bound before the run."""

    # Every exported graph takes and gives fp32 (an fp16 export keeps fp32 inputs and outputs): float inputs,
    # bf16 under autocast included, are cast to it.
    dtype = torch.float32

    def __init__(self, session, device: torch.device):
        self.session = session
        self.device = device
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]
        self._shapes: Dict[tuple, List[tuple]] = {}  # input shapes -> output shapes, learnt on the first run
        self.bound = device.type == "cuda" and session.get_providers()[0] != PROVIDERS["cpu"]

    def _prepare(self, tensors: Tuple[torch.Tensor, ...]) -> List[torch.Tensor]:
        if len(tensors) != len(self.inputs):
            raise ValueError(f"the graph takes {self.inputs}, got {len(tensors)} tensors")
        return [(t.to(self.dtype) if t.is_floating_point() else t).contiguous() for t in tensors]

    def __call__(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        ins = self._prepare(tensors)
        key = tuple(tuple(t.shape) for t in ins)
        if self.bound and key in self._shapes:
            return self._run_bound(ins, self._shapes[key])
        feed = {n: t.detach().cpu().numpy() for n, t in zip(self.inputs, ins)}
        outs = tuple(torch.from_numpy(o).to(self.device) for o in self.session.run(self.outputs, feed))
        # The exporter does not tie every output dimension to an input's name: the first run of each input
        # shape (a few: the last prompt chunk is smaller) tells the output shapes that binding allocates.
        self._shapes[key] = [tuple(o.shape) for o in outs]
        return outs

    def _run_bound(self, ins: List[torch.Tensor], shapes: List[tuple]) -> Tuple[torch.Tensor, ...]:
        """Inputs and outputs bound to torch's memory where they live (on CUDA: no host round trip), the
        outputs allocated by torch."""
        binding = self.session.io_binding()
        kind, idx = self.device.type, self.device.index or 0
        for name, t in zip(self.inputs, ins):
            binding.bind_input(name, kind, idx, _NP[t.dtype], list(t.shape), t.data_ptr())
        outs = [torch.empty(shape, dtype=self.dtype, device=self.device) for shape in shapes]
        for name, t in zip(self.outputs, outs):
            binding.bind_output(name, kind, idx, _NP[t.dtype], list(t.shape), t.data_ptr())
        if kind == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # the inputs are written before ORT reads them
        self.session.run_with_iobinding(binding)
        return tuple(outs)
