"""The evaluation loops: one Pipeline, one image at a time, results cached per image.

A re-run with the same settings skips every image whose result is cached (``OUT/cache/<fingerprint>/``);
changing the preset, an override, the class file or the protocol changes the fingerprint, so stale
results are never mixed in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..encoders.text import LabelEmbeddings
from ..files import atomic_write
from ..labels import LabelError, check_text
from ..pipeline import Pipeline
from .datasets import RefSample, SegDataset, group_by_image, read_index_png, read_rgb
from .metrics import ReferringTally, confusion, seg_scores
from .protocol import (ClassNames, dense_name_logits, official_tiles, referring_outcome, rescale_image,
                       rescale_size, segments_as_masks, semantic_prediction)


@dataclass
class SemanticSettings:
    resize: Optional[Tuple[int, int]] = None  # mmseg Resize scale; None keeps the image size
    prob_thd: float = 0.0


@dataclass
class RunInfo:
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    skipped: List[str] = field(default_factory=list)  # ids that could not be evaluated, with why
    pixels: int = 0  # semantic: pixels predicted, and those no region covered (the dense fill's share)
    uncovered: int = 0


def fingerprint(pipeline: Pipeline, extra: Dict[str, Any]) -> str:
    cfg = dataclasses.asdict(pipeline.config)
    enc = pipeline.encoder
    ident = {"config": cfg, "encoder": f"{type(enc).__module__}.{type(enc).__name__}:{enc.model_name}", **extra}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def safe_name(sample_id: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id)[:80]
    return f"{clean}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"


def progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)


@contextmanager
def per_image_tiles(pipeline: Pipeline) -> Iterator[Callable[[Tuple[int, int]], None]]:
    """With ``tiles=auto``: a function that sets the tiling of one resized image as the official models
    tile the image they are given (protocol.official_tiles); the config's tiles come back afterwards."""
    tiles = pipeline.config.tiles

    def use(frame_hw: Tuple[int, int]) -> None:
        if tiles == "auto":
            grid = official_tiles(*frame_hw, pipeline.encoder.image_size)
            if pipeline.config.tiles != grid:
                pipeline.update(tiles=grid)
    try:
        yield use
    finally:
        if pipeline.config.tiles != tiles:
            pipeline.update(tiles=tiles)


def evaluate_semantic(pipeline: Pipeline, classes: ClassNames, data: SegDataset, cache_dir: str,
                      settings: SemanticSettings, show_progress: bool = True) -> Tuple[np.ndarray, RunInfo]:
    """-> the dataset's (C, C) confusion matrix and what ran. The pipeline's vocabulary becomes the class names."""
    pipeline.set_vocabulary(classes.flat)
    sigmoid = pipeline.encoder.sigmoid_logit()
    c = len(classes)
    os.makedirs(cache_dir, exist_ok=True)
    total = np.zeros((c, c), np.int64)
    info, t0 = RunInfo(), time.perf_counter()
    bar = progress(len(data), "semantic", show_progress)
    with per_image_tiles(pipeline) as tile:
        for s in data.samples:
            path = os.path.join(cache_dir, safe_name(s.id) + ".npz")
            if os.path.isfile(path):
                with np.load(path) as z:
                    conf, uncovered, pixels = z["confusion"], int(z["uncovered"]), int(z["pixels"])
                info.cached += 1
            else:
                conf, uncovered, pixels = semantic_one(pipeline, classes, data, s, settings, sigmoid, tile)
                # An interrupted run never leaves half a result behind (files.atomic_write).
                atomic_write(path, lambda f: np.savez(f, confusion=conf, uncovered=uncovered, pixels=pixels))
                info.computed += 1
            total += conf
            info.uncovered += uncovered
            info.pixels += pixels
            bar.update(1)
            bar.set_postfix_str(f"mIoU {100 * seg_scores(total).miou:.1f}")
    bar.close()
    info.seconds = time.perf_counter() - t0
    return total, info


def semantic_one(pipeline: Pipeline, classes: ClassNames, data: SegDataset, s, settings: SemanticSettings,
                 sigmoid, tile) -> Tuple[np.ndarray, int, int]:
    """One image -> (its confusion matrix, pixels no region covered, pixels)."""
    rgb, label = read_rgb(s.image), data.load_label(s)
    if label.shape != rgb.shape[:2]:
        raise ValueError(f"{s.id}: label {label.shape} and image {rgb.shape[:2]} differ in size")
    frame_hw = rescale_size(*label.shape, settings.resize)
    frame = rescale_image(rgb, frame_hw)
    tile(frame_hw)
    masks = None
    if pipeline.config.mask_source == "given":  # the ground-truth segments
        masks, _ = segments_as_masks(label, data.load_instances(s), data.ignore_index, frame_hw)
    result = pipeline.process(frame, masks=masks, keep_views=True)
    stats: Dict[str, int] = {}
    pred, _ = semantic_prediction(result, classes, label.shape, sigmoid, settings.prob_thd, stats=stats,
                                  null_fill=lambda: dense_name_logits(pipeline, frame, sigmoid, result.views))
    result.views = None  # the encoder's activations: not kept past this image
    gt = torch.from_numpy(label).to(pred.device)
    return confusion(gt, pred, len(classes), data.ignore_index).cpu().numpy(), stats["uncovered"], label.size


def expression_embeddings(pipeline: Pipeline, expressions: List[str]) -> LabelEmbeddings:
    """Each expression whole, as the official code embeds it (no ';' synonym split)."""
    rows = [pipeline.text.embed_name(e) for e in expressions]
    return LabelEmbeddings(tuple(expressions), torch.stack(rows),
                           torch.arange(len(rows), device=rows[0].device))


def given_referring_masks(group: List[RefSample], hw, gt_mask: Optional[np.ndarray], frame_hw) -> torch.Tensor:
    """``--masks given``: the image's instance map (every id, 0 included, one region), or else the
    first expression's true mask and its complement; at the frame's size."""
    inst = group[0].instances
    if inst:
        ids = read_index_png(inst).astype(np.int64)
        if ids.shape != tuple(hw):
            raise ValueError(f"{inst}: instance map {ids.shape} does not match its image {tuple(hw)}")
    elif gt_mask is None:
        raise ValueError("--masks given needs an instance map or a mask for each referring record")
    else:
        ids = gt_mask.astype(np.int64)
    masks, _ = segments_as_masks(ids, None, -1, frame_hw)
    return masks


# eval_referring.py runs TextRegionSegmenter with --scale 2016 2016: mmcv imrescale to a 2016 long side.
OFFICIAL_REFERRING_RESIZE = (2016, 2016)


def evaluate_referring(pipeline: Pipeline, refs: List[RefSample], cache_dir: str, show_progress: bool = True,
                       resize: Optional[Tuple[int, int]] = OFFICIAL_REFERRING_RESIZE
                       ) -> Tuple[ReferringTally, List[Dict[str, Any]], RunInfo]:
    """-> the tally, one record per expression, and what ran. Each image is resized by ``resize`` (mmcv
    keep-ratio rule) and tiled as the official code tiles it; masks are scored at the image's own size."""
    os.makedirs(cache_dir, exist_ok=True)
    tally, records = ReferringTally(), []
    info, t0 = RunInfo(), time.perf_counter()
    bar = progress(len(refs), "referring", show_progress)
    with per_image_tiles(pipeline) as tile:
        for group in group_by_image(refs):
            paths = [os.path.join(cache_dir, safe_name(s.id) + ".json") for s in group]
            if all(os.path.isfile(p) for p in paths):
                done = []
                for p in paths:
                    with open(p, encoding="utf-8") as f:
                        done.append(json.load(f))
                info.cached += len(group)
            else:
                done = referring_image(pipeline, group, resize, tile)
                for p, rec in zip(paths, done):
                    atomic_write(p, lambda f: f.write(json.dumps(rec).encode()))
                info.computed += len(group)
            for rec in done:
                records.append(rec)
                if rec.get("skipped"):
                    info.skipped.append(f"{rec['id']}: {rec['skipped']}")
                tally.add(rec["iou"], rec["box_hit"], rec["abstained"], rec["inter"], rec["union"])
            bar.update(len(group))
            acc = tally.scores()["acc50"]
            bar.set_postfix_str(f"acc@0.5 {100 * (acc or 0):.1f}")
    bar.close()
    info.seconds = time.perf_counter() - t0
    return tally, records, info


def referring_image(pipeline: Pipeline, group: List[RefSample], resize: Optional[Tuple[int, int]], tile
                    ) -> List[Dict[str, Any]]:
    rgb = read_rgb(group[0].image)
    hw = rgb.shape[:2]
    frame_hw = rescale_size(*hw, resize)
    tile(frame_hw)
    truths = [(s.gt_mask(hw), s.box) for s in group]
    ok, bad = [], {}
    for i, s in enumerate(group):
        try:
            check_text(s.expression)
            ok.append(i)
        except LabelError as exc:  # scored as a miss, and listed in the report
            bad[i] = str(exc)
    given = pipeline.config.mask_source == "given"
    masks = given_referring_masks(group, hw, truths[0][0], frame_hw) if given else None
    q_emb = expression_embeddings(pipeline, [group[i].expression for i in ok]) if ok else None
    result = pipeline.process(rescale_image(rgb, frame_hw), masks=masks, query_embeddings=q_emb) if ok else None
    groundings = dict(zip(ok, result.groundings)) if result is not None else {}
    out = []
    for i, s in enumerate(group):
        g = groundings.get(i)
        gt_mask, gt_box = truths[i]
        if g is None or g.region < 0 or not len(result):
            pred = np.zeros(hw, bool)
        else:  # the region's mask at the image's own size (the official: resized logits > 0)
            one = result.masks.select(torch.tensor([g.region], device=result.tokens.device))
            pred = (one.at_frame(hw)[0] >= 0.5).cpu().numpy()
        iou, hit, inter, union = referring_outcome(pred, gt_mask, gt_box, s.detections)
        rec = {"id": s.id, "expression": s.expression, "iou": iou, "box_hit": hit, "inter": inter,
               "union": union, "abstained": not (g is not None and g.found),
               "prob": g.prob if g is not None else None}
        if i in bad:
            rec["skipped"] = bad[i]
        out.append(rec)
    return out
