"""The GPU-resident everything generator against stock sam2, on the real hiera-tiny (random weights)."""
import numpy as np
import pytest
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

from textregion_ros.masks.sam2_everything import Sam2Everything
from textregion_ros.scene import make_scene


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter).clamp_min(1)


def greedy_match(iou: torch.Tensor):
    iou = iou.clone()
    pairs = []
    for _ in range(min(iou.shape)):
        k = int(torch.argmax(iou))
        i, j = divmod(k, iou.shape[1])
        pairs.append((i, j, float(iou[i, j])))
        iou[i, :] = -1
        iou[:, j] = -1
    return pairs


@pytest.fixture(scope="module")
def small_scene():
    s = make_scene(320, 240)
    return s.rgb, torch.from_numpy(s.rgb).permute(2, 0, 1).float() / 255


def test_agrees_with_stock_sam2_one_to_one(sam2_tiny, small_scene):
    rgb, img = small_scene
    n = 4
    ours = Sam2Everything(sam2_tiny, points_per_side=n, pred_iou_thresh=0, stability_score_thresh=0,
                          box_nms_thresh=1.0, min_mask_area=0, fuse_masks=False).generate(img)
    stock = SAM2AutomaticMaskGenerator(sam2_tiny, points_per_side=n, points_per_batch=64, crop_n_layers=0,
                                       output_mode="binary_mask", pred_iou_thresh=0, stability_score_thresh=0,
                                       box_nms_thresh=1.0).generate(rgb)
    theirs = torch.from_numpy(np.stack([a["segmentation"] for a in stock]))
    mine = ours.at_frame() >= 0.5
    assert len(ours) == len(stock) == 3 * n * n
    # Not degenerate: real areas, and not all the same mask.
    areas = theirs.flatten(1).float().mean(1)
    assert ((areas > 0.01) & (areas < 0.99)).all(), areas
    assert len({tuple(m.flatten().nonzero()[:50, 0].tolist()) for m in theirs}) > 1
    assert iou_matrix(theirs[:1], theirs[1:]).min() < 0.9
    # One-to-one in both directions.
    iou = iou_matrix(mine, theirs)
    pairs = greedy_match(iou)
    assert len({i for i, _, _ in pairs}) == len({j for _, j, _ in pairs}) == len(stock)
    good = sum(p[2] >= 0.9 for p in pairs) / len(pairs)
    assert good >= 0.95, good
    assert (iou.max(dim=0).values >= 0.9).float().mean() >= 0.95
    assert (iou.max(dim=1).values >= 0.9).float().mean() >= 0.95


def test_filters_fusion_and_counts(sam2_tiny, small_scene):
    _, img = small_scene
    gen = Sam2Everything(sam2_tiny, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0,
                         box_nms_thresh=0.7, min_mask_area=50, fuse_masks=True, max_masks=5)
    ms = gen.generate(img)
    c = ms.counts
    assert c["candidates"] == 48 and c["candidates"] >= c["thresholds"] >= c["nms"] >= c["fused"] >= c["kept"]
    assert c["nms"] < c["thresholds"], "NMS at 0.7 must remove overlapping candidates"
    assert len(ms) == c["kept"] <= 5 and ms.is_logits
    # Impossible thresholds leave nothing, without error.
    gen.pred_iou_thresh = 1e9
    empty = gen.generate(img)
    assert len(empty) == 0 and empty.at_frame().shape == (0, 240, 320)


def test_runs_at_512_input_with_derived_feature_sizes(sam2_tiny, small_scene):
    _, img = small_scene
    gen = Sam2Everything(sam2_tiny, points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0,
                         box_nms_thresh=1.0, min_mask_area=0, fuse_masks=False, input_size=512, point_batch=4)
    raw = gen.decode(gen.encode(img))
    assert raw.logits.shape == (27, 128, 128)
    assert gen.feat_sizes == [(128, 128), (64, 64), (32, 32)]
    ms = gen.postprocess(raw, (240, 320))
    fr = ms.at_frame() >= 0.5
    assert len(ms) == 27 and fr.shape == (27, 240, 320)
    assert 0.0 < fr.float().mean() < 1.0


def test_rejects_bad_images(sam2_tiny):
    gen = Sam2Everything(sam2_tiny, points_per_side=2)
    with pytest.raises(ValueError):
        gen.generate(torch.zeros(240, 320, 3))
    with pytest.raises(ValueError):
        gen.generate(torch.zeros(3, 240, 320, dtype=torch.uint8))
