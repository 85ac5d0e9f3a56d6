"""Reports: report.json (everything), report.md (the table), and with --plots two matplotlib PNGs."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

from .metrics import SegScores


def pct(x: Optional[float]) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def nan_to_none(values) -> List[Optional[float]]:
    return [None if not math.isfinite(float(v)) else float(v) for v in values]


def semantic_report(scores: SegScores, names: List[str], header: Dict[str, Any]) -> Dict[str, Any]:
    return {**header, "task": "semantic",
            "metrics": dict(zip(("mIoU", "aAcc", "mAcc"), nan_to_none([scores.miou, scores.aacc, scores.macc]))),
            "per_class": [{"class": n, "iou": i, "acc": a, "gt_pixels": int(p)}
                          for n, i, a, p in zip(names, nan_to_none(scores.iou), nan_to_none(scores.acc),
                                                scores.gt_pixels)]}


def weights_line(report: Dict[str, Any]) -> str:
    if report.get("random_weights"):
        return ("**Random weights** (`random_weights: true`): these numbers check the bookkeeping only and say "
                "nothing about TextRegion's quality.")
    return f"Weights: {report.get('weights', '?')}."


def semantic_markdown(report: Dict[str, Any]) -> str:
    m = report["metrics"]
    lines = [f"# Semantic segmentation: {report.get('dataset', '')}", "", weights_line(report), "",
             f"Preset `{report['preset']}`, masks `{report['masks']}`, {report['images']} images; "
             f"{pct(report.get('uncovered_fraction'))}% of pixels were covered by no region (filled by the "
             "dense CLIP head, or class 0 for other families).", "",
             "| mIoU | aAcc | mAcc |", "|---:|---:|---:|", f"| {pct(m['mIoU'])} | {pct(m['aAcc'])} | {pct(m['mAcc'])} |",
             "", "| class | IoU | acc | GT pixels |", "|---|---:|---:|---:|"]
    lines += [f"| {c['class']} | {pct(c['iou'])} | {pct(c['acc'])} | {c['gt_pixels']} |" for c in report["per_class"]]
    return "\n".join(lines) + "\n"


def referring_markdown(report: Dict[str, Any]) -> str:
    m = report["metrics"]
    return "\n".join([
        f"# Referring expressions: {report.get('dataset', '')}", "", weights_line(report), "",
        f"Preset `{report['preset']}`, masks `{report['masks']}`, {m['n']} expressions.", "",
        "| acc@0.5 | box acc@0.5 (official) | mean IoU | cumulative IoU | abstain rate |",
        "|---:|---:|---:|---:|---:|",
        f"| {pct(m['acc50'])} | {pct(m['box_acc50'])} | {pct(m['miou'])} | {pct(m['ciou'])} | {pct(m['abstain_rate'])} |",
    ]) + "\n"


def write_report(out_dir: str, report: Dict[str, Any], markdown: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=False)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown)


def semantic_plots(out_dir: str, scores: SegScores, conf: np.ndarray, names: List[str]) -> List[str]:
    """Per-class IoU bars and the row-normalised confusion matrix (classes that occur)."""
    import matplotlib  # imported here: only --plots needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    iou = np.nan_to_num(scores.iou) * 100
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(names)), 4))
    ax.bar(range(len(names)), iou, color="tab:blue")
    ax.axhline(100 * scores.miou, color="tab:red", lw=1, label=f"mIoU {100 * scores.miou:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "per_class_iou.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    present = np.nonzero(conf.sum(1) + conf.sum(0))[0]
    sub = conf[np.ix_(present, present)].astype(np.float64)
    sub = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(present)), max(4, 0.3 * len(present))))
    im = ax.imshow(sub, cmap="viridis", vmin=0, vmax=1)
    ticks = [names[i] for i in present]
    ax.set_xticks(range(len(present)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(present)), ticks, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "confusion.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
