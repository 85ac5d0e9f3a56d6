"""bench_pipeline --backend torch onnxruntime: each exported unit and the whole frame on both backends.

The pipeline's own models (random weights) are exported to a temporary directory and loaded through the
backend's loading path (manifest, fingerprint, session). Every round times each unit on torch and then on
ONNX Runtime, back to back, so both see the same machine; the medians over rounds give the ratios. The
frame is timed three ways: torch only, every unit on ONNX Runtime, and the faster backend per unit.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Callable, Dict, List

import torch

from bench_pipeline import timed
from textregion_ros.backends import attach_graphs
from textregion_ros.backends.export import export
from textregion_ros.tokens import make_views, plan_views

UNITS = ("sam2_image_encoder", "sam2_decoder", "image_trunk")


def clock(fn: Callable[[], object], cuda: bool) -> float:
    """Seconds ``fn`` takes, synchronised on CUDA: bench_pipeline's own timer."""
    out: Dict[str, float] = {}
    with timed(out, "t", cuda):
        fn()
    return out["t"]


def set_units(pipe, graphs: Dict[str, object], use: Dict[str, str]) -> None:
    """Each unit on the backend ``use`` names (graphs: the loaded ONNX Runtime units)."""
    sam, enc = pipe.mask_source, pipe.encoder
    sam.image_graph = graphs["sam2_image_encoder"] if use["sam2_image_encoder"] == "onnxruntime" else None
    sam.prompt_graph = graphs["sam2_decoder"] if use["sam2_decoder"] == "onnxruntime" else None
    enc.trunk_graph = graphs["image_trunk"] if use["image_trunk"] == "onnxruntime" else None


def unit_calls(pipe, rgb) -> Dict[str, Callable[[], object]]:
    sam, enc, cfg = pipe.mask_source, pipe.encoder, pipe.config
    with torch.inference_mode():
        img = torch.from_numpy(rgb).to(pipe.device).permute(2, 0, 1).float() / 255
        feats = sam.encode(img)
        views = enc.normalize(make_views(img, enc.image_size, plan_views(img.shape[1:], cfg.tiles, enc.image_size),
                                         cfg.use_global_view, enc.interpolation))
    return {"sam2_image_encoder": lambda: sam.encode(img),
            "sam2_decoder": lambda: sam.decode(feats),
            "image_trunk": lambda: enc.encode_values(views)}


def run_backends(pipe, rgb, queries: List[str], args, cuda: bool) -> dict:
    cfg = pipe.config
    root = tempfile.mkdtemp(prefix="bench-onnx-")
    t0 = time.perf_counter()
    export(cfg, root, sam=pipe.mask_source, encoder=pipe.encoder, log=lambda line: print("  export " + line))
    export_s = time.perf_counter() - t0
    onnx_cfg = cfg.replace(onnx_dir=root, sam2_backend="onnxruntime", encoder_backend="onnxruntime")
    attach_graphs(onnx_cfg, pipe.encoder, pipe.mask_source, lambda line: print("  " + line))
    sam, enc = pipe.mask_source, pipe.encoder
    graphs = {"sam2_image_encoder": sam.image_graph, "sam2_decoder": sam.prompt_graph, "image_trunk": enc.trunk_graph}
    torch_only = {u: "torch" for u in UNITS}
    ort_only = {u: "onnxruntime" for u in UNITS}
    calls = unit_calls(pipe, rgb)
    times: Dict[str, Dict[str, List[float]]] = {u: {"torch": [], "onnxruntime": []} for u in UNITS}
    with torch.inference_mode():
        for r in range(args.warmup + args.frames):
            for backend, use in (("torch", torch_only), ("onnxruntime", ort_only)):
                set_units(pipe, graphs, use)
                for u in UNITS:
                    dt = clock(calls[u], cuda)
                    if r >= args.warmup:
                        times[u][backend].append(dt)
    per_unit = {u: {b: statistics.median(v) for b, v in t.items()} for u, t in times.items()}
    best = {u: min(("torch", "onnxruntime"), key=lambda b: per_unit[u][b]) for u in UNITS}
    frames = frame_times(pipe, rgb, queries, graphs, {"torch": torch_only, "onnxruntime": ort_only, "best": best},
                         args, cuda)
    set_units(pipe, graphs, torch_only)
    report = {"export_s": export_s, "threads": torch.get_num_threads(),
              "providers": graphs["image_trunk"].session.get_providers(),
              "units_median_s": per_unit,
              "units_torch_over_onnxruntime": {u: per_unit[u]["torch"] / per_unit[u]["onnxruntime"] for u in UNITS},
              "best_per_unit": best, "frames_median_s": frames,
              "frame_torch_over_best": frames["everything"]["torch"] / frames["everything"]["best"],
              "target_torch_over_best": frames["target"]["torch"] / frames["target"]["best"]}
    print_report(report)
    return report


def frame_times(pipe, rgb, queries, graphs, plans: Dict[str, Dict[str, str]], args, cuda) -> dict:
    """Median frame time of everything-mode and of a target frame, per plan, the plans taking turns."""
    q_emb = pipe.embed_queries(queries)
    kinds = {"everything": lambda: pipe.process(rgb, query_embeddings=q_emb).groundings,
             "target": lambda: pipe.process_target(rgb, q_emb).groundings}
    out = {k: {p: [] for p in plans} for k in kinds}
    for r in range(args.warmup + args.frames):
        for name, use in plans.items():
            set_units(pipe, graphs, use)
            for kind, fn in kinds.items():
                dt = clock(fn, cuda)
                if r >= args.warmup:
                    out[kind][name].append(dt)
    return {k: {p: statistics.median(v) for p, v in d.items()} for k, d in out.items()}


def print_report(rep: dict) -> None:
    print(f"backends (ONNX Runtime providers {rep['providers']}, {rep['threads']} threads; medians):")
    print(f"  {'unit':<20} {'torch ms':>9} {'ort ms':>9} {'torch/ort':>9}")
    for u, t in rep["units_median_s"].items():
        print(f"  {u:<20} {t['torch'] * 1e3:9.1f} {t['onnxruntime'] * 1e3:9.1f} "
              f"{rep['units_torch_over_onnxruntime'][u]:9.2f}")
    for kind, t in rep["frames_median_s"].items():
        print(f"  {kind + ' frame':<20} torch {t['torch'] * 1e3:.1f} ms, onnxruntime {t['onnxruntime'] * 1e3:.1f} ms, "
              f"best per unit {t['best'] * 1e3:.1f} ms")
    print(f"  the frame, torch over best per unit: {rep['frame_torch_over_best']:.2f}x "
          f"(target frame {rep['target_torch_over_best']:.2f}x); best: {rep['best_per_unit']}")
