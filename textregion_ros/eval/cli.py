"""textregion-eval: semantic segmentation and referring-expression quality, with the paper's protocol.

    textregion-eval semantic --layout voc --root VOC2012 --classes cls_voc21.txt --preset paper --out eval/voc21
    textregion-eval semantic --layout folder --images imgs --labels labels --classes names.txt --masks given
    textregion-eval referring --refs refcoco_val.jsonl --images train2014 --preset paper --set tiles=auto
    textregion-eval convert-refcoco --refer-dir refcoco --split val --out refcoco_val.jsonl

Every run writes OUT/report.json and OUT/report.md (and with --plots, per_class_iou.png and
confusion.png), and caches each image's result under OUT/cache, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .. import config as config_mod
from ..encoders.weights import WeightsUnavailableError
from .protocol import OFFICIAL_PROB_THD, OFFICIAL_RESIZE, ClassNames

PROTOCOL_NOTES = [
    "a class with several names takes the max of their probabilities (official: the first class only; "
    "the same on the official class files)",
    "SAM2 masks reach the label map in one bilinear resize of the low-resolution logits (sam2: two)",
    "the CLIP fill for uncovered pixels reuses the region pass's last-block inputs and runs only the CSA block "
    "on them, on images with uncovered pixels only",
]
LAYOUT_DATASET = {"voc": "voc21", "ade20k": "ade20k"}


def parse_overrides(items: List[str]) -> Dict[str, Any]:
    """--set key=value (YAML values: 0.5, true, [a, b]) -> PipelineConfig overrides, checked by name."""
    fields = {f.name: f for f in dataclasses.fields(config_mod.PipelineConfig)}
    hints = typing.get_type_hints(config_mod.PipelineConfig)
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of the config fields "
                             f"({', '.join(sorted(fields))})")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if "Tuple" in str(hints[key]):
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif hints[key] is str and value is not None and not isinstance(value, str):
            value = raw.strip()  # "2x2", "1" for a string field
        out[key] = value
    return out


def parse_resize(text: str) -> Optional[Tuple[int, int]]:
    """"LONGxSHORT" -> (long, short); "none" -> None (the image keeps its size)."""
    if text.lower() == "none":
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--resize must be LONGxSHORT (e.g. 2016x672) or none, not {text!r}")
    return int(parts[0]), int(parts[1])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="textregion-eval", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="task", required=True)

    def common(p):
        p.add_argument("--preset", default="paper", choices=sorted(config_mod.PRESETS))
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field (repeatable), e.g. --set tiles=auto --set device=cuda")
        p.add_argument("--masks", choices=["preset", "given", "sam2", "superpixels"], default="preset",
                       help="region masks: the preset's source, another source, or 'given' (ground-truth "
                            "instance masks: labelling quality without SAM2)")
        p.add_argument("--out", default="eval_out", help="report and cache folder")
        p.add_argument("--limit", type=int, default=0, help="evaluate the first N images / expressions")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument("--dataset-name", default="", help="shown in the report")

    s = sub.add_parser("semantic", help="open-vocabulary semantic segmentation: mIoU, aAcc, per-class IoU")
    s.add_argument("--layout", choices=["voc", "ade20k", "folder"], default="folder")
    s.add_argument("--root", help="dataset root for --layout voc / ade20k")
    s.add_argument("--images"), s.add_argument("--labels"), s.add_argument("--instances")
    s.add_argument("--split", help="file of image ids, one per line")
    s.add_argument("--classes", required=True, help="class file: one class per line, names separated by ';'")
    s.add_argument("--protocol", choices=sorted(OFFICIAL_RESIZE), default=None,
                   help="the official config to follow (resize scale, prob threshold); default from --layout")
    s.add_argument("--resize", help="override the resize scale: LONGxSHORT or none")
    s.add_argument("--prob-thd", type=float, help="override the probability threshold")
    s.add_argument("--ignore-index", type=int, default=255)
    s.add_argument("--plots", action="store_true", help="per-class IoU bars and a confusion matrix (PNG)")
    common(s)

    r = sub.add_parser("referring", help="referring expressions: acc@0.5, mean / cumulative IoU, abstain rate")
    r.add_argument("--refs", required=True, help="JSONL of {image, expression, box | mask | polygons}")
    r.add_argument("--images", help="folder that relative image paths start from (default: the JSONL's)")
    r.add_argument("--resize", default="2016x2016",
                   help="LONGxSHORT or none; default 2016x2016, the official referring evaluation's --scale")
    common(r)

    c = sub.add_parser("convert-refcoco", help="the refer toolkit's files -> our referring JSONL")
    c.add_argument("--refer-dir", required=True), c.add_argument("--split", required=True)
    c.add_argument("--split-by"), c.add_argument("--detections"), c.add_argument("--out", required=True)
    return ap


def make_pipeline(args, encoder=None):
    from ..files.hub import prefer_cache_when_offline
    from ..pipeline import Pipeline

    overrides = parse_overrides(args.overrides)
    if args.masks != "preset":
        overrides["mask_source"] = args.masks
    cfg = config_mod.preset(args.preset, **overrides)
    if not cfg.random_weights and encoder is None:
        prefer_cache_when_offline()  # no route to the hub: missing weights fail at once, cached ones load
    return Pipeline(cfg, encoder=encoder), overrides


def header(args, pipeline, overrides, info, fp: str) -> Dict[str, Any]:
    cfg = pipeline.config
    custom = type(pipeline.encoder).__module__.split(".")[0] != "textregion_ros"
    return {"dataset": args.dataset_name or "", "preset": args.preset, "overrides": overrides,
            "masks": cfg.mask_source, "random_weights": bool(cfg.random_weights),
            "weights": (f"custom encoder {type(pipeline.encoder).__name__}" if custom else
                        f"{cfg.encoder_model} ({'random' if cfg.random_weights else cfg.encoder_weights})")
            + ("" if cfg.mask_source != "sam2" else f", SAM2 {cfg.sam2_model}"),
            "device": str(pipeline.device), "computed": info.computed, "cached": info.cached,
            "seconds": round(info.seconds, 2), "skipped": info.skipped, "fingerprint": fp,
            "protocol_differences": PROTOCOL_NOTES}


def run_semantic(args, encoder=None) -> Dict[str, Any]:
    from .datasets import seg_dataset
    from .metrics import seg_scores
    from .report import semantic_markdown, semantic_plots, semantic_report, write_report
    from .run import SemanticSettings, evaluate_semantic, fingerprint

    classes = ClassNames.read(args.classes)
    data = seg_dataset(args.layout, args.root, args.images, args.labels, args.instances, args.split,
                       args.ignore_index, args.limit)
    protocol = args.protocol or LAYOUT_DATASET.get(args.layout)
    resize = OFFICIAL_RESIZE.get(protocol) if args.resize is None else parse_resize(args.resize)
    prob_thd = args.prob_thd if args.prob_thd is not None else OFFICIAL_PROB_THD.get(protocol, 0.0)
    pipeline, overrides = make_pipeline(args, encoder)
    settings = SemanticSettings(resize, prob_thd)
    fp = fingerprint(pipeline, {"task": "semantic", "classes": classes.classes, "settings": settings,
                                "ignore": args.ignore_index, "reduce_zero_label": data.reduce_zero_label})
    conf, info = evaluate_semantic(pipeline, classes, data, os.path.join(args.out, "cache", "semantic-" + fp),
                                   settings, not args.no_progress)
    scores = seg_scores(conf)
    report = semantic_report(scores, classes.names, header(args, pipeline, overrides, info, fp))
    report.update(images=len(data), protocol=protocol, resize=resize, prob_thd=prob_thd,
                  uncovered_fraction=info.uncovered / info.pixels if info.pixels else None,
                  ignore_index=args.ignore_index, reduce_zero_label=data.reduce_zero_label)
    md = semantic_markdown(report)
    if args.plots:
        report["plots"] = semantic_plots(args.out, scores, conf, classes.names)
    write_report(args.out, report, md)
    return report


def run_referring(args, encoder=None) -> Dict[str, Any]:
    from .datasets import read_refs
    from .report import referring_markdown, write_report
    from .run import evaluate_referring, fingerprint

    refs = read_refs(args.refs, args.images, args.limit)
    resize = parse_resize(args.resize)
    pipeline, overrides = make_pipeline(args, encoder)
    fp = fingerprint(pipeline, {"task": "referring", "refs": os.path.abspath(args.refs), "images": args.images,
                                "resize": resize})
    tally, records, info = evaluate_referring(pipeline, refs, os.path.join(args.out, "cache", "referring-" + fp),
                                              not args.no_progress, resize)
    report = {**header(args, pipeline, overrides, info, fp), "task": "referring", "resize": resize,
              "metrics": tally.scores(), "records": records}
    write_report(args.out, report, referring_markdown(report))
    return report


def main(argv: Optional[List[str]] = None, encoder=None) -> int:
    """The command. ``encoder`` replaces the preset's image-text encoder (tests plant one)."""
    args = build_parser().parse_args(argv)
    try:
        if args.task == "convert-refcoco":
            from .refcoco import convert, write_jsonl
            n = write_jsonl(convert(args.refer_dir, args.split, args.split_by, args.detections), args.out)
            print(f"wrote {n} expressions to {args.out}")
            return 0
        report = run_semantic(args, encoder) if args.task == "semantic" else run_referring(args, encoder)
    except (ValueError, OSError, WeightsUnavailableError) as exc:
        print(f"textregion-eval: {exc}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "report.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"report: {os.path.join(args.out, 'report.json')} ({report['computed']} computed, "
          f"{report['cached']} from the cache)")
    return 0
