"""textregion-eval end to end on a generated dataset with known answers (test/eval_data.py).

A planted encoder (its tokens are the text embedding of each region's true class) with ground-truth
masks must score exactly 1.0; one swapped class must cost exactly what the pixel counts say. Then the
real command with random weights, resuming from its cache, and its refusals.
"""
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

from eval_data import CLASSES, PlantedEncoder, write_dataset
from textregion_ros.eval.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("voc"))
    return root, write_dataset(root, n=24)


def semantic(data, out, *extra, encoder=None):
    root, info = data
    argv = ["semantic", "--layout", "voc", "--root", root, "--classes", info["classes"], "--preset", "cpu-lite",
            "--masks", "given", "--out", str(out), "--no-progress", *extra]
    assert main(argv, encoder=encoder if encoder is not None else PlantedEncoder()) == 0
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def referring(refs, out, *extra, encoder=None):
    assert main(["referring", "--refs", refs, "--preset", "cpu-lite", "--masks", "given", "--out", str(out),
                 "--no-progress", *extra], encoder=encoder if encoder is not None else PlantedEncoder()) == 0
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def test_planted_tokens_with_given_masks_score_one(data, tmp_path):
    _, info = data
    rep = semantic(data, tmp_path, "--plots")
    assert rep["metrics"] == {"mIoU": 1.0, "aAcc": 1.0, "mAcc": 1.0}
    per = {c["class"]: c for c in rep["per_class"]}
    assert per["unicorn"]["iou"] is None  # never in the data nor predicted: left out of the mean
    assert [c["gt_pixels"] for c in rep["per_class"]] == info["counts"].tolist()
    assert rep["images"] == 24 and rep["computed"] == 24 and rep["protocol"] == "voc21"
    assert rep["resize"] == [1008, 672] and rep["prob_thd"] == 0.4  # the official VOC21 config
    assert rep["random_weights"] is False and "PlantedEncoder" in rep["weights"]
    # Given masks cover every labelled pixel: what no region covers is the ignore band, give or take resampling.
    assert rep["uncovered_fraction"] == pytest.approx(info["ignored"] / info["pixels"], abs=0.01)
    for png in ("per_class_iou.png", "confusion.png"):
        with open(tmp_path / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| red box | 100.00 |" in (tmp_path / "report.md").read_text()


def test_one_swapped_class_costs_exactly_its_pixels(data, tmp_path):
    _, info = data
    counts = info["counts"]
    red, green = 1 + CLASSES.index("red box"), 1 + CLASSES.index("green disc")
    rep = semantic(data, tmp_path, encoder=PlantedEncoder(swap={"red box": "green disc"}))
    # Every red pixel is predicted green: red IoU 0, green IoU = G / (G + R), the other present classes 1.
    present = int((counts > 0).sum())
    want = (present - 2 + counts[green] / (counts[green] + counts[red])) / present
    assert rep["metrics"]["mIoU"] == pytest.approx(want, abs=1e-12)
    per = {c["class"]: c["iou"] for c in rep["per_class"]}
    assert per["red box"] == 0.0 and per["green disc"] == pytest.approx(counts[green] / (counts[green] + counts[red]))
    assert rep["metrics"]["aAcc"] == pytest.approx(1 - counts[red] / counts.sum(), abs=1e-12)


def test_referring_planted_scores_one_and_a_swapped_expression_misses(data, tmp_path):
    root, info = data
    # The official scale (a 2016-px long side): masks go to the frame and back, so edges may move a pixel.
    m = referring(info["refs"], tmp_path / "a")["metrics"]
    assert m["n"] == info["n_refs"] and m["acc50"] == 1.0 and m["miou"] > 0.98 and m["abstain_rate"] == 0.0
    assert m["box_acc50"] >= 0.9  # the box rule keeps the largest component only
    rep = referring(info["refs"], tmp_path / "b", "--resize", "none")
    m = rep["metrics"]
    assert rep["resize"] is None and m["acc50"] == 1.0 and m["miou"] == 1.0 and m["ciou"] == 1.0
    swapped = tmp_path / "swapped.jsonl"
    lines = [json.loads(ln) for ln in open(info["refs"])]
    n_red = 0
    for rec in lines:
        if rec["expression"] == "red box":
            rec["expression"], n_red = "green disc", n_red + 1
        for k in ("image", "mask", "instances"):
            rec[k] = os.path.join(root, rec[k])
    swapped.write_text("".join(json.dumps(r) + "\n" for r in lines))
    m = referring(str(swapped), tmp_path / "c", "--resize", "none")["metrics"]
    assert n_red == 24 and m["acc50"] == pytest.approx(1 - n_red / len(lines), abs=1e-12)
    assert m["miou"] == pytest.approx(1 - n_red / len(lines), abs=1e-12)  # the green object is disjoint: IoU 0


def test_auto_tiles_tile_the_resized_image_as_the_official_model_does(tmp_path):
    """model_semantic tiles the image the dataset's Resize gives it; the node's auto would rescale a wide
    image again (2016x672) and cut more tiles."""
    import official_textregion as official
    sizes = [(160, 320), (240, 200), (160, 300)]
    root = str(tmp_path / "voc")
    info = write_dataset(root, n=len(sizes), sizes=sizes)
    enc = PlantedEncoder()
    rep = semantic((root, info), tmp_path / "out", "--set", "tiles=auto", encoder=enc)
    assert rep["metrics"]["mIoU"] == 1.0
    want = []
    for h, w in sizes:
        rh, rw = official.imrescale_bilinear(np.zeros((h, w, 3), np.float32), (1008, 672)).shape[:2]
        want.append(1 + max(rh // 448, 1) * max(rw // 448, 1))  # the global view and the crops
    assert enc.views == want == [3, 2, 3]


def test_a_rerun_resumes_from_the_cache_and_new_settings_do_not_reuse_it(data, tmp_path):
    first = semantic(data, tmp_path)
    again = semantic(data, tmp_path)
    assert (again["computed"], again["cached"]) == (0, 24) and again["metrics"] == first["metrics"]
    cache = tmp_path / "cache" / f"semantic-{first['fingerprint']}"
    victim = sorted(os.listdir(cache))[3]
    os.remove(cache / victim)  # an image interrupted before its result was written
    third = semantic(data, tmp_path)
    assert (third["computed"], third["cached"]) == (1, 23) and third["metrics"] == first["metrics"]
    other = semantic(data, tmp_path, "--set", "region_logit_scale=40")
    assert other["computed"] == 24 and other["fingerprint"] != first["fingerprint"]


def run_cli(*args, env=None, timeout=600):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "textregion_ros.eval", *args], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT)


def test_random_weights_run_the_real_models_and_the_report_says_so(data, tmp_path, capsys):
    root, info = data
    # SAM2's masks (random weights leave pixels uncovered: the CLIP fill runs) and the official tiling; in this
    # process (the preset's real models, no planted encoder), the referring run below through the script.
    rc = main(["semantic", "--layout", "voc", "--root", root, "--classes", info["classes"], "--preset", "cpu-lite",
               "--set", "random_weights=true", "--set", "tiles=auto", "--limit", "1", "--out", str(tmp_path / "s")])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["random_weights"] is True and "random" in rep["weights"] and rep["images"] == 1
    assert rep["masks"] == "sam2" and 0.0 <= rep["metrics"]["mIoU"] <= 1.0 and 0.0 <= rep["uncovered_fraction"] <= 1
    assert "Random weights" in (tmp_path / "s" / "report.md").read_text() and "Random weights" in out
    # Referring with the preset's own mask source (SAM2, random weights), through the shipped script.
    q = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "textregion-eval"), "referring", "--refs",
                        info["refs"], "--preset", "cpu-lite", "--set", "random_weights=true", "--limit", "2",
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr[-3000:]
    m = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]
    assert m["n"] == 2 and 0.0 <= m["acc50"] <= 1.0 and 0.0 <= m["abstain_rate"] <= 1.0
    assert "referring" in q.stderr  # the tqdm bar


def test_missing_weights_fail_fast_with_a_clear_error(data, tmp_path):
    root, info = data
    t0 = time.monotonic()
    p = run_cli("semantic", "--layout", "voc", "--root", root, "--classes", info["classes"], "--preset", "cpu-lite",
                "--masks", "given", "--out", str(tmp_path), env={"HF_HOME": str(tmp_path / "empty"),
                                                                  "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and "textregion-eval:" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert time.monotonic() - t0 < 60


def test_bad_arguments_and_mismatched_class_files_are_refused(data, tmp_path, capsys):
    root, info = data
    base = ["semantic", "--layout", "voc", "--root", root, "--preset", "cpu-lite", "--masks", "given",
            "--out", str(tmp_path), "--no-progress"]
    assert main(base + ["--classes", info["classes"], "--set", "no_such_knob=1"], encoder=PlantedEncoder()) == 2
    assert "no_such_knob" in capsys.readouterr().err
    assert main(base + ["--classes", info["classes"], "--set", "region_logit_scale=nan"],
                encoder=PlantedEncoder()) == 2
    short = tmp_path / "short.txt"
    short.write_text("background\nred box\n")
    assert main(base + ["--classes", str(short)], encoder=PlantedEncoder()) == 2
    assert "class file names 2 classes" in capsys.readouterr().err
    assert main(["semantic", "--layout", "voc", "--root", str(tmp_path / "nowhere"), "--classes", str(short),
                 "--out", str(tmp_path)], encoder=PlantedEncoder()) == 2
    capsys.readouterr()
    # An instances folder named on the command line must exist (the layout's own default may be absent).
    assert main(base + ["--classes", info["classes"], "--instances", str(tmp_path / "typo")],
                encoder=PlantedEncoder()) == 2
    assert "instances folder" in capsys.readouterr().err


def test_refcoco_converter_reads_the_refer_toolkit_files(tmp_path):
    refer = tmp_path / "refcoco"
    refer.mkdir()
    inst = {"images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 5, "image_id": 9, "bbox": [4, 6, 20, 10], "iscrowd": 0,
                             "segmentation": [[4, 6, 24, 6, 24, 16, 4, 16]]}]}
    (refer / "instances.json").write_text(json.dumps(inst))
    refs = [{"ref_id": 1, "ann_id": 5, "image_id": 9, "split": "val", "file_name": "COCO_train2014_000000000009_5.jpg",
             "sentences": [{"raw": "left dog ", "sent_id": 11}, {"raw": "the dog", "sent_id": 12}]},
            {"ref_id": 2, "ann_id": 5, "image_id": 9, "split": "testA", "sentences": [{"raw": "x", "sent_id": 13}]}]
    with open(refer / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps({"9": [[0, 0, 10, 10]]}))
    out = tmp_path / "val.jsonl"
    assert main(["convert-refcoco", "--refer-dir", str(refer), "--split", "val", "--detections", str(dets),
                 "--out", str(out)]) == 0
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["expression"] for r in recs] == ["left dog", "the dog"] and recs[0]["id"] == "1-11"
    assert recs[0]["box"] == [4.0, 6.0, 20.0, 10.0] and recs[0]["detections"] == [[0, 0, 10, 10]]
    from textregion_ros.eval.datasets import read_refs
    sample = read_refs(str(out), images=str(tmp_path))[0]
    mask = sample.gt_mask((48, 64))
    assert mask.sum() == 21 * 11 and mask[6, 4] and mask[16, 24]  # cv2 fills the polygon's edges too
    assert main(["convert-refcoco", "--refer-dir", str(refer), "--split", "testB", "--out", str(out)]) == 2
