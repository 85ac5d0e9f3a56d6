"""textregion-export: write the ONNX graphs (and their manifests) that the onnxruntime backend runs.

    textregion-export --preset cpu-lite                      # SAM2 image encoder, prompt decoder, image trunk
    textregion-export --preset realtime --dtype fp16 --onnx-dir /data/onnx
    textregion-export --set encoder_model=ViT-B-16-SigLIP2 --units trunk

The models are built by the same loading code as the node (Hugging Face cache, local checkpoints), so a
graph holds exactly the weights the configuration names. Each unit goes to its own directory under
``onnx_dir`` (manifest.unit_dir); the node's ``onnx_dir`` knob points at the same root.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch

from ..masks.sam2_build import sam2_size
from .graphs import Sam2ImageGraph, Sam2PromptGraph, TrunkGraph
from .manifest import GRAPH, Manifest, file_sha256, root_of, unit_dir, weights_fingerprint

UNITS = ("sam2_image", "sam2_prompt", "trunk")
OPSET = 17
DTYPES = ("fp32", "fp16")  # fp16: for GPUs; its inputs and outputs stay fp32


def versions() -> Dict[str, str]:
    import onnx

    from .. import __version__
    return {"torch": torch.__version__, "onnx": onnx.__version__, "textregion_ros": __version__}


def weights_named(config, weights: str) -> str:
    """What the manifest says the weights were: "random", the name the config gives, or "default"."""
    return "random" if config.random_weights else (weights or "default")


def sam2_unit(sam, unit: str, config, dtype: str, fingerprint: str) -> tuple:
    """(module, example inputs, input names, output names, dynamic axes, manifest) of a SAM2 unit."""
    size = sam.input_size
    common = dict(model=sam2_size(config.sam2_model), weights=weights_named(config, config.sam2_weights),
                  weights_fingerprint=fingerprint, input_size=size, dtype=dtype, opset=OPSET)
    x = torch.rand(1, 3, size, size, device=sam.device)
    if unit == "sam2_image":
        names_out = ["image_embed", "high_res_0", "high_res_1"]
        return (Sam2ImageGraph(sam), (x,), ["image"], names_out, {},
                Manifest(unit=unit, inputs=["image"], outputs=names_out, **common))
    embed, high_res = sam.torch_maps(x)
    # Four prompts of three points, labels of every kind: the export must not specialise on either count.
    coords = torch.rand(4, 3, 2, device=sam.device) * 1024
    labels = torch.tensor([[1, 0, -1], [2, 3, 1], [1, 1, 0], [1, -1, -1]], dtype=torch.int32, device=sam.device)
    names_in = ["image_embed", "high_res_0", "high_res_1", "coords", "labels"]
    names_out = ["masks", "iou"]
    axes = {"coords": {0: "batch", 1: "points"}, "labels": {0: "batch", 1: "points"},
            "masks": {0: "batch"}, "iou": {0: "batch"}}
    return (Sam2PromptGraph(sam), (embed, *high_res, coords, labels), names_in, names_out, axes,
            Manifest(unit=unit, inputs=names_in, outputs=names_out, **common))


def trunk_unit(encoder, config, dtype: str) -> tuple:
    size = encoder.image_size
    views = torch.rand(2, 3, size, size, device=encoder.device)
    names_out = ["values", "block_input"]
    manifest = Manifest(unit="trunk", model=config.encoder_model, weights=weights_named(config, config.encoder_weights),
                        weights_fingerprint=weights_fingerprint(encoder.model.visual), input_size=size, dtype=dtype,
                        opset=OPSET, inputs=["views"], outputs=names_out)
    axes = {"views": {0: "batch"}, "values": {0: "batch"}, "block_input": {0: "batch"}}
    return TrunkGraph(encoder), (views,), ["views"], names_out, axes, manifest


def to_fp16(path: str) -> None:
    """The graph's weights and arithmetic in fp16, its inputs and outputs kept fp32 (the pipeline's tensors):
    onnxconverter-common's converter, the one ONNX Runtime's documentation names (an optional extra)."""
    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise RuntimeError("--dtype fp16 needs onnxconverter-common (pip install onnxconverter-common)") from exc
    onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True), path)


def write_unit(module, example, names_in, names_out, axes, manifest: Manifest, root: str, dtype: str) -> str:
    """Export one unit into a fresh directory, then move it into place: a failed export leaves the previous
    graphs as they were."""
    target = unit_dir(root, manifest.unit, manifest.model, manifest.input_size, dtype)
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".export-", dir=root)
    module = module.eval().requires_grad_(False)  # weights enter the graph as initialisers, not trainable inputs
    try:
        path = os.path.join(work, GRAPH)
        fastpath = torch.backends.mha.get_fastpath_enabled()
        # nn.MultiheadAttention's fused inference kernel (open_clip's CLIP) has no ONNX form; its plain path does.
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(module, example, path, input_names=names_in, output_names=names_out,
                                  dynamic_axes=axes or None, opset_version=OPSET, dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        if dtype == "fp16":
            to_fp16(path)
        manifest.graph_sha256 = file_sha256(path)
        manifest.versions = versions()
        manifest.write(work)
        old = target + ".old"
        if os.path.isdir(target):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export(config, onnx_dir: Optional[str] = None, units: Sequence[str] = UNITS, dtype: str = "fp32",
           sam=None, encoder=None, log=print) -> List[str]:
    """Export ``units`` of ``config`` under ``onnx_dir`` (default: the knob's) -> the units' directories.
    ``sam`` / ``encoder``: already built models (tests, benchmarks); otherwise built as the node builds them."""
    from ..encoders import create_encoder
    from ..files.hub import fetch_weights
    from ..masks.sam2_everything import Sam2Everything

    root = root_of(onnx_dir if onnx_dir is not None else config.onnx_dir)
    if sam is None and encoder is None:
        fetch_weights(config)  # every missing weight named at once, as the node does
    out, sam_fingerprint = [], None
    for unit in units:
        t0 = time.perf_counter()
        if unit == "trunk":
            encoder = encoder or create_encoder(config.encoder_model, config.encoder_weights, config.random_weights)
            parts = trunk_unit(encoder, config, dtype)
        else:
            sam = sam or Sam2Everything.from_config(config, torch.device("cpu"))
            sam_fingerprint = sam_fingerprint or weights_fingerprint(sam.model)  # one pass for both SAM2 units
            parts = sam2_unit(sam, unit, config, dtype, sam_fingerprint)
        out.append(write_unit(*parts, root=root, dtype=dtype))
        log(f"{unit}: {out[-1]} ({time.perf_counter() - t0:.1f} s)")
    return out


def config_from(args):
    """--preset (else the params file's own ``preset``, else realtime, as the node), then --params (the node's
    YAML: a ros__parameters file or plain keys), then --set."""
    from .. import config as config_mod
    from ..eval.cli import parse_overrides

    overrides, preset_name = {}, args.preset
    if args.params:
        import yaml
        with open(args.params) as f:
            raw = yaml.safe_load(f) or {}
        while isinstance(raw, dict) and len(raw) == 1 and isinstance(next(iter(raw.values())), dict) \
                and next(iter(raw)) not in config_mod.PipelineConfig.__dataclass_fields__:
            raw = next(iter(raw.values()))  # <node name>: ros__parameters: {...}, or /**:
        fields = config_mod.PipelineConfig.__dataclass_fields__
        overrides.update(parse_overrides([f"{k}={v}" for k, v in raw.items() if k in fields]))
        preset_name = preset_name or raw.get("preset")
    overrides.update(parse_overrides(args.overrides))
    return config_mod.preset(preset_name or "realtime", **overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .. import config as config_mod

    p = argparse.ArgumentParser(prog="textregion-export", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default=None, choices=sorted(config_mod.PRESETS),
                   help="default: the params file's preset, else realtime (the node's default)")
    p.add_argument("--params", help="the node's parameters YAML (its model and input-size keys are read)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--units", nargs="+", choices=UNITS, default=list(UNITS))
    p.add_argument("--onnx-dir", default=None, help="default: the config's onnx_dir (~/.cache/textregion_ros/onnx)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    args = p.parse_args(argv)
    try:
        config = config_from(args)
        units = [u for u in args.units if u == "trunk" or config.mask_source == "sam2"]
        export(config, args.onnx_dir, units, args.dtype)
    except (OSError, ValueError, RuntimeError) as exc:  # WeightsUnavailableError is a RuntimeError
        print(f"textregion-export: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
