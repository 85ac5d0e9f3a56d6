"""The evaluation metric against independent computations: torchmetrics' MulticlassJaccardIndex on random
label maps, and a confusion matrix worked out by hand."""
import math

import numpy as np
import pytest
import torch

from textregion_ros.eval.metrics import ReferringTally, box_iou, confusion, seg_scores

torchmetrics = pytest.importorskip("torchmetrics", reason="torchmetrics is a dev dependency (requirements-dev.txt)")
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex  # noqa: E402


@pytest.mark.parametrize("seed", range(6))
def test_iou_matches_torchmetrics_with_ignore_absent_classes_and_empty_predictions(seed):
    rng = np.random.default_rng(seed)
    c = 9
    jac = MulticlassJaccardIndex(num_classes=c, average=None, ignore_index=255)
    acc = MulticlassAccuracy(num_classes=c, average="micro", ignore_index=255)
    total = np.zeros((c, c), np.int64)
    for _ in range(4):  # a dataset of images, accumulated as mmseg does
        h, w = rng.integers(5, 40, 2)
        gt = rng.integers(0, c - 3, (h, w))  # the last 3 classes never occur in the ground truth
        gt[rng.random((h, w)) < 0.2] = 255
        pred = rng.integers(0, c - 1, (h, w))  # class c-1 is never predicted (an empty prediction)
        if seed % 2:
            pred[:] = 0  # an image whose prediction is one class only
        total += confusion(torch.from_numpy(gt), torch.from_numpy(pred), c).numpy()
        jac.update(torch.from_numpy(pred), torch.from_numpy(gt))
        acc.update(torch.from_numpy(pred), torch.from_numpy(gt))
    ours = seg_scores(total)
    theirs = jac.compute().numpy()
    union = total.sum(0) + total.sum(1) - np.diag(total)
    defined = union > 0
    np.testing.assert_allclose(ours.iou[defined], theirs[defined], atol=1e-6)
    assert np.isnan(ours.iou[~defined]).all() and (~defined).any()  # no ground truth, never predicted
    assert ours.miou == pytest.approx(theirs[defined].mean(), abs=1e-6)  # mmseg: the mean over defined classes
    assert ours.aacc == pytest.approx(float(acc.compute()), abs=1e-6)


def test_confusion_by_hand():
    gt = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 1, 0]])
    conf = confusion(gt, pred, 4).numpy()
    want = np.zeros((4, 4), int)
    want[0, 0], want[0, 1], want[1, 1], want[2, 1] = 1, 1, 2, 1  # the ignored pixel (pred 0) is not counted
    np.testing.assert_array_equal(conf, want)
    s = seg_scores(conf)
    # class 0: I=1, U=2; class 1: I=2, U=4 (2 gt + 4 pred - 2); class 2: I=0, U=1; class 3 undefined
    np.testing.assert_allclose(s.iou[:3], [0.5, 0.5, 0.0])
    assert math.isnan(s.iou[3])
    assert s.miou == pytest.approx(1 / 3) and s.aacc == pytest.approx(3 / 5)
    assert s.macc == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_bad_ground_truth_is_an_error_not_a_dropped_pixel():
    with pytest.raises(ValueError, match="class 7"):
        confusion(torch.tensor([[7]]), torch.tensor([[0]]), 4)
    with pytest.raises(ValueError, match="size"):
        confusion(torch.zeros(2, 2), torch.zeros(2, 3), 4)


def test_referring_tally_and_box_iou():
    assert box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0
    t = ReferringTally()
    t.add(0.9, True, False, 9, 10)
    t.add(0.5, False, True, 5, 10)  # exactly 0.5 is not a hit (the official "> 0.5")
    t.add(0.0, False, True, 0, 20)
    s = t.scores()
    assert s["acc50"] == pytest.approx(1 / 3) and s["box_acc50"] == pytest.approx(1 / 3)
    assert s["miou"] == pytest.approx(1.4 / 3) and s["ciou"] == pytest.approx(14 / 40)
    assert s["abstain_rate"] == pytest.approx(2 / 3)
    assert ReferringTally().scores()["acc50"] is None
