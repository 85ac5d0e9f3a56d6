"""The evaluation's protocol against the official code's formulas (test/official_textregion.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import official_textregion as official
from textregion_ros.classify import Classification
from textregion_ros.eval.datasets import SegDataset, SegSample
from textregion_ros.eval.protocol import (ClassNames, largest_component, mask_box, referring_outcome, rescale_size,
                                          segments_as_masks, semantic_prediction)
from textregion_ros.masks.base import MaskSet
from textregion_ros.results import FrameResult

VOC_LIKE = ["sky; wall; tree; floor", "aeroplane", "bicycle", "bird", "boat"]
PLAIN = ["wall", "building", "sky", "floor", "tree", "person"]


def frame(cos: torch.Tensor, masks: torch.Tensor) -> FrameResult:
    r = cos.shape[0]
    cls = Classification(cos.argmax(1), cos.max(1).values, cos.max(1).values, cos)
    return FrameResult(frame_hw=tuple(masks.shape[-2:]), masks=MaskSet(masks, torch.ones(r), tuple(masks.shape[-2:])),
                       tokens=torch.zeros(r, 4), classes=cls, labels=(), num_background=0, queries=(),
                       region_logit_scale=50.0)


def write_classes(tmp_path, lines):
    p = tmp_path / "cls.txt"
    p.write_text("\n".join(lines))  # no final newline, as the official files
    return ClassNames.read(str(p))


@pytest.mark.parametrize("fill", [False, True], ids=["zero-fill", "clip-fill"])
@pytest.mark.parametrize("lines,prob_thd,sigmoid", [(VOC_LIKE, 0.4, None), (PLAIN, 0.0, None), (PLAIN, 0.35, None),
                                                    (VOC_LIKE, 0.4, (10.0, -2.0))])
@pytest.mark.parametrize("seed", range(3))
def test_label_map_equals_the_official_postprocess(tmp_path, lines, prob_thd, sigmoid, seed, fill):
    classes = write_classes(tmp_path, lines)
    names, idx = official.get_cls_idx(lines)
    assert classes.flat == names and classes.name_class.tolist() == idx
    g = torch.Generator().manual_seed(seed)
    r, s = 7, len(names)
    cos = torch.rand(r, s, generator=g) * 0.3
    masks = torch.rand(r, 24, 32, generator=g) * 1.4 - 0.2  # soft, some outside [0, 1]
    masks[:, :6, :9] = -0.5  # pixels no region covers
    dense = torch.randn(s, 7, 9, generator=g) * 0.2
    logits = cos if sigmoid is None else cos * sigmoid[0] + sigmoid[1]
    ori = (50, 61)
    # The official region masks come at the image's size (sam2 resizes them); ours at the source's.
    official_masks = F.interpolate(masks[None], ori, mode="bilinear", align_corners=False)[0]
    probs, want = official.postprocess_result(logits, official_masks, ori, max(idx) + 1, len(idx), 50, prob_thd,
                                              clip_logits=dense[None] if fill else None)
    pred, conf = semantic_prediction(frame(cos, masks), classes, ori, sigmoid, prob_thd,
                                     null_fill=(lambda: dense) if fill else None)
    assert (official_masks.clamp(0, 1).sum(0) == 0).sum() > 50  # the fill matters
    assert torch.equal(pred, want[0])
    torch.testing.assert_close(conf, probs.max(1)[0][0])


def test_rescale_is_mmcv_keep_ratio():
    for h, w in [(375, 500), (500, 333), (512, 683), (1200, 300)]:
        img = np.zeros((h, w, 3), np.float32)
        for scale in [(1008, 672), (2016, 672), (1334, 896)]:
            assert rescale_size(h, w, scale) == official.imrescale_bilinear(img, scale).shape[:2]
    assert rescale_size(10, 20, None) == (10, 20)


def test_reduce_zero_label_as_mmseg(tmp_path):
    from PIL import Image
    Image.fromarray(np.array([[0, 1, 150, 255]], np.uint8)).save(tmp_path / "a.png")
    data = SegDataset([SegSample("a", "", str(tmp_path / "a.png"))], reduce_zero_label=True)
    assert data.load_label(data.samples[0]).tolist() == [[255, 0, 149, 255]]


def test_given_masks_are_the_labelled_segments_at_the_frame_size():
    label = np.array([[0, 0, 1, 1], [0, 255, 1, 1], [2, 2, 2, 2]])
    inst = np.array([[0, 0, 1, 2], [0, 255, 1, 2], [3, 3, 4, 4]])
    masks, cls = segments_as_masks(label, inst, 255, (6, 8))
    assert masks.shape == (len(cls), 6, 8)
    assert sorted(cls.tolist()) == [0, 1, 1, 2, 2]
    assert int(masks.sum(0).max()) == 1 and int(masks.sum()) == 6 * 8 - 4  # one region per pixel, border left out
    masks2, cls2 = segments_as_masks(label, None, 255, (3, 4))
    assert sorted(cls2.tolist()) == [0, 1, 2]


def test_referring_box_rule_matches_the_official_helpers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = np.zeros((40, 50), np.uint8)
        for _ in range(rng.integers(1, 4)):
            y, x, hh, ww = rng.integers(0, 30), rng.integers(0, 40), rng.integers(2, 10), rng.integers(2, 10)
            m[y:y + hh, x:x + ww] = 1
        want = official.mask_to_bbox(official.clean_mask_keep_largest(m))
        got = mask_box(largest_component(m.astype(bool)))
        assert got == (want[0], want[1], want[2] - want[0], want[3] - want[1])
    gt = np.zeros((40, 50), bool)
    gt[5:25, 5:25] = True
    iou, hit, inter, union = referring_outcome(gt.copy(), gt, None)
    assert iou == 1.0 and hit and inter == union == 400
    # snapped to the detection it overlaps most, then scored against the box
    iou, hit, _, _ = referring_outcome(gt.copy(), None, [0, 0, 30, 30], detections=[[0, 0, 30, 30], [40, 0, 5, 5]])
    assert hit and iou == pytest.approx(1.0)
    iou, hit, inter, union = referring_outcome(np.zeros_like(gt), gt, None)
    assert iou == 0.0 and not hit and union == 400
