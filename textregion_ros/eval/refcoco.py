"""Convert the `refer` toolkit's RefCOCO / RefCOCO+ / RefCOCOg files to our referring JSONL.

    textregion-eval convert-refcoco --refer-dir data/refcoco --split val --out refcoco_val.jsonl

The refer folder holds ``instances.json`` (COCO annotations) and ``refs(<split_by>).p`` (a pickle of refs
written by the refer toolkit: ref_id, ann_id, image_id, split, sentences). It is the user's own download;
pickle runs code, so only convert files you trust. Each sentence becomes one record with the annotation's
box and polygons; ``--detections`` (ReCLIP's ``*_dets_dict.json``: image id -> [x, y, w, h] boxes) adds the
boxes the official protocol snaps to.
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Dict, Iterator, Optional

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


def refs_file(refer_dir: str, split_by: Optional[str]) -> str:
    if split_by is None:
        split_by = DEFAULT_SPLIT_BY.get(os.path.basename(os.path.normpath(refer_dir)).lower(), "unc")
    path = os.path.join(refer_dir, f"refs({split_by}).p")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (the refer toolkit's refs file; see --split-by)")
    return path


def convert(refer_dir: str, split: str, split_by: Optional[str] = None,
            detections: Optional[str] = None) -> Iterator[Dict]:
    with open(os.path.join(refer_dir, "instances.json"), encoding="utf-8") as f:
        inst = json.load(f)
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    with open(refs_file(refer_dir, split_by), "rb") as f:
        refs = pickle.load(f)  # noqa: S301 - the user's refer download (module docstring)
    dets: Dict[int, list] = {}
    if detections:
        with open(detections, encoding="utf-8") as f:
            raw = json.load(f)
        if isinstance(raw, dict):
            dets = {int(k): v for k, v in raw.items()}
        else:
            for d in raw:
                dets.setdefault(int(d["image_id"]), []).append(d["box"])
    found = False
    for ref in refs:
        if ref["split"] != split:
            continue
        found = True
        ann, image = anns[ref["ann_id"]], images[ref["image_id"]]
        seg = ann.get("segmentation")
        for k, sent in enumerate(ref["sentences"]):
            rec = {"id": f"{ref['ref_id']}-{sent.get('sent_id', k)}", "image": image["file_name"],
                   "expression": sent["raw"].strip(), "box": [float(v) for v in ann["bbox"]]}
            if isinstance(seg, list) and seg:
                rec["polygons"] = seg
            if ref["image_id"] in dets:
                rec["detections"] = dets[ref["image_id"]]
            yield rec
    if not found:
        raise ValueError(f"no refs in split {split!r}")


def write_jsonl(records, out: str) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
            n += 1
    return n
