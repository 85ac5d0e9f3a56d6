"""Startup time, cold and warm: model construction and embedding the default vocabulary.

    python bench/bench_startup.py [--preset cpu-lite]

No pretrained weights can be downloaded here, so the encoder loads a local checkpoint (random
weights saved to a temporary file): the load path and the text-embedding disk cache behave as with
real weights. "cold" starts with an empty cache directory, "warm" is the next start with it filled.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-lite")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from textregion_ros.config import preset
    from textregion_ros.encoders import create_encoder
    from textregion_ros.pipeline import Pipeline

    tmp = tempfile.mkdtemp(prefix="tr_startup_")
    os.environ["TEXTREGION_CACHE"] = os.path.join(tmp, "cache")
    cfg0 = preset(args.preset)
    torch.manual_seed(0)
    ckpt = os.path.join(tmp, "encoder.pt")
    torch.save(create_encoder(cfg0.encoder_model, weights=cfg0.encoder_weights, random_weights=True).model.state_dict(),
               ckpt)
    report = {"preset": args.preset, "labels": len(cfg0.vocabulary) + len(cfg0.background),
              "templates": cfg0.templates}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        # SAM2 weights are random (none to download here); the encoder loads the checkpoint.
        pipe = Pipeline(cfg0.replace(encoder_weights=ckpt, random_weights=False, mask_source="superpixels"))
        report[f"{run}_startup_s"] = round(time.perf_counter() - t0, 2)
        assert pipe.text.disk_dir and os.path.isdir(pipe.text.disk_dir)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
