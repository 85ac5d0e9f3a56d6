"""compose(): every published array from one frame, checked against hand-made masks and numpy."""
import numpy as np
import pytest
import torch

import textregion_ros.compose as compose_mod
from textregion_ros.classify import Classification
from textregion_ros.compose import ComposeRequest, compose, region_crop
from textregion_ros.masks.base import MaskSet
from textregion_ros.results import FrameResult


def frame(masks, probs):
    r = masks.shape[0]
    cls = Classification(label=torch.arange(r) % 2, prob=torch.tensor(probs), cosine=torch.tensor(probs) / 2,
                         cosines=torch.zeros(r, 2))
    ms = MaskSet(masks=masks.float(), scores=torch.ones(r), frame_hw=tuple(masks.shape[1:]))
    return FrameResult(frame_hw=tuple(masks.shape[1:]), masks=ms, tokens=torch.zeros(r, 4), classes=cls,
                       labels=("a", "b"), num_background=0, queries=())


@pytest.fixture
def case():
    m = torch.zeros(3, 40, 60)
    m[0, 5:20, 10:30] = 1      # box x 10..30, y 5..20
    m[1, 15:35, 25:50] = 1     # overlaps region 0 in y 15..20, x 25..30
    m[2, 30:38, 0:8] = 1
    return m, [0.5, 0.9, 0.7]  # region 1 scores highest, so it wins the overlap


@pytest.mark.parametrize("chunk", [10**9, 40 * 60])  # everything at once, or one region per chunk
def test_boxes_areas_crops_and_instance_map_by_hand(case, chunk, monkeypatch):
    monkeypatch.setattr(compose_mod, "CHUNK_ELEMENTS", chunk)
    masks, probs = case
    out = compose(frame(masks, probs), None, ComposeRequest(instance=True, crops=True))
    assert out.boxes.tolist() == [[10, 5, 30, 20], [25, 15, 50, 35], [0, 30, 8, 38]]
    assert out.area.tolist() == [15 * 20, 20 * 25, 8 * 8]
    for i in range(3):
        x0, y0, x1, y1 = out.boxes[i]
        assert np.array_equal(out.crop(i), masks[i, y0:y1, x0:x1].numpy().astype(np.uint8))
    inst = out.instance
    assert inst.dtype == np.uint16 and inst.shape == (40, 60)
    assert inst[17, 27] == 2, "the overlap goes to the higher-scoring region"
    assert inst[6, 11] == 1 and inst[31, 1] == 3 and inst[0, 59] == 0
    assert out.label.tolist() == [0, 1, 0] and np.allclose(out.prob, probs)


def test_median_3d_points_against_numpy(case):
    masks, probs = case
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 3.0, (40, 60)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    K = np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])
    out = compose(frame(masks, probs), None, ComposeRequest(depth=torch.from_numpy(depth), K=K, depth_stride=1))
    vs, us = np.mgrid[0:40, 0:60]
    for i in range(3):
        sel = masks[i].numpy().astype(bool) & np.isfinite(depth)
        z = depth[sel]
        x = (us[sel] - 30) * z / 50
        y = (vs[sel] - 20) * z / 50
        expect = [np.median(v) for v in (x, y, z)]
        assert np.allclose(out.points[i], expect, atol=1e-5), i
        extent = [np.quantile(v, 0.98) - np.quantile(v, 0.02) for v in (x, y, z)]  # numpy as the oracle
        assert np.allclose(out.sizes[i], extent, atol=1e-5), i


def test_overlay_blends_outlines_and_highlights_on_the_device(case):
    masks, probs = case
    image = torch.full((40, 60, 3), 100, dtype=torch.uint8)
    colors = torch.tensor([[255, 0, 0], [0, 0, 255], [0, 255, 0]], dtype=torch.uint8)
    out = compose(frame(masks, probs), image, ComposeRequest(overlay=True, alpha=0.5, colors=colors, grounded=2))
    ov = out.overlay
    assert ov.shape == (40, 60, 3) and ov.dtype == np.uint8
    assert ov[0, 59].tolist() == [100, 100, 100]  # outside every mask
    assert ov[10, 15].tolist() == [177, 50, 50]   # inside region 0: half red over grey
    assert ov[19, 12].tolist() == [255, 0, 0]     # the last row of region 0 is its outline
    assert ov[29, 3].tolist() == [0, 255, 0]      # just above region 2: the grounded region's green border
    assert out.instance is None and out.crop_data is None


def test_one_host_transfer_and_empty_frames(case, monkeypatch):
    masks, probs = case
    calls = []
    real = compose_mod._to_host
    monkeypatch.setattr(compose_mod, "_to_host", lambda ts: calls.append(len(ts)) or real(ts))
    compose(frame(masks, probs), torch.zeros(40, 60, 3, dtype=torch.uint8),
            ComposeRequest(instance=True, crops=True, overlay=True))
    assert len(calls) == 1
    empty = compose(frame(torch.zeros(0, 40, 60), []), None, ComposeRequest(instance=True, crops=True))
    assert len(empty) == 0 and empty.instance.sum() == 0 and empty.crop_data.size == 0
    assert np.array_equal(region_crop(frame(masks, probs), 2), np.ones((8, 8), np.uint8))


def test_crops_and_3d_in_one_request(case):
    """Every output at once, as the node asks: per-region extents keep their (R, 3) shape."""
    masks, probs = case
    depth = torch.full((40, 60), 2.0)
    K = np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])
    out = compose(frame(masks, probs), torch.zeros(40, 60, 3, dtype=torch.uint8),
                  ComposeRequest(instance=True, crops=True, overlay=True, depth=depth, K=K, depth_stride=1,
                                 target=True, grounded=1))
    assert out.points.shape == (3, 3) and out.sizes.shape == (3, 3)
    assert out.sizes[0, 0] == pytest.approx(0.96 * 20 * 2.0 / 50, abs=0.02)  # 20 px at 2 m, f = 50
    assert out.target is not None and out.target.points.shape[1] == 3
