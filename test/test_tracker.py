"""Region tracks on generated sequences with known identities (tracks/tracker.py).

Random SAM2 weights cannot segment, so regions are the scene's true visible masks, shuffled every
frame as a mask source would order them. Tokens are a fixed random direction per object plus
per-frame noise: what a real encoder gives one object over time (the encoder's own tokens are
covered by the pipeline test at the end). Identity switches are counted the MOT way: an object
whose tracked id changes between two frames where it has one.
"""
import numpy as np
import pytest
import torch

from textregion_ros.classify import Classification
from textregion_ros.masks.base import MaskSet
from textregion_ros.results import FrameResult
from textregion_ros.eval.scene import moving_objects
from textregion_ros.tracks.tracker import Tracker, TrackerConfig, mask_iou, shift_masks

E = 32


def as_result(frame, tokens_by_object, rng, noise=0.15, order=None):
    n = len(frame.object_ids)
    order = rng.permutation(n) if order is None else order
    masks = torch.from_numpy(frame.masks[order]).float()
    tok = tokens_by_object[frame.object_ids[order]] + noise * rng.standard_normal((n, E))
    tokens = torch.nn.functional.normalize(torch.tensor(tok, dtype=torch.float32), dim=-1)
    h, w = frame.rgb.shape[:2]
    cls = Classification(torch.zeros(n, dtype=torch.long), torch.ones(n), torch.ones(n), torch.ones(n, 1))
    return FrameResult(frame_hw=(h, w), masks=MaskSet(masks, torch.ones(n), (h, w)), tokens=tokens, classes=cls,
                       labels=("x",), num_background=0, queries=()), frame.object_ids[order]


def run(frames, tracker, tokens_by_object, seed=0, noise=0.15):
    rng = np.random.default_rng(seed)
    history = []  # per frame: {object: track id}
    for f in frames:
        result, objs = as_result(f, tokens_by_object, rng, noise)
        upd = tracker.update(result)
        history.append({int(o): int(t) for o, t in zip(objs, upd.track_ids)})
    return history


def id_switches(history):
    last, switches = {}, 0
    for frame in history:
        for obj, tid in frame.items():
            if tid == 0:
                continue
            if obj in last and last[obj] != tid:
                switches += 1
            last[obj] = tid
    return switches


def occlusion_events(frames, n):
    """Object-frames where an object shows less than 70% of its largest visible area."""
    full = np.zeros(n)
    for f in frames:
        for j, k in enumerate(f.object_ids):
            full[k] = max(full[k], f.masks[j].sum())
    return sum(1 for f in frames for j, k in enumerate(f.object_ids) if f.masks[j].sum() < 0.7 * full[k]) + \
        sum(1 for f in frames for k in range(n) if k not in f.object_ids)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("objects, distinct_tokens", [(6, True), (3, False)])
def test_no_identity_switches_at_up_to_20px_per_frame_with_occlusions(seed, objects, distinct_tokens):
    frames = moving_objects(60, width=640, height=480, objects=objects, max_speed=20.0, seed=seed)
    rng = np.random.default_rng(100 + seed)
    # Identical tokens (three identical mugs): overlap and motion alone must keep the ids apart.
    e = rng.standard_normal((objects, E)) if distinct_tokens else np.tile(rng.standard_normal(E), (objects, 1))
    hist = run(frames, Tracker(TrackerConfig()), e, seed)
    assert id_switches(hist) == 0
    # Every object is tracked (confirmed) from its second frame on, through partial occlusions.
    for obj in range(objects):
        seen = [h[obj] for h in hist if obj in h]
        assert all(seen[1:]), f"object {obj} lost its id at some frame"


def test_the_sequences_have_occlusions_to_survive():
    events = sum(occlusion_events(moving_objects(60, width=640, height=480, objects=6, max_speed=20.0, seed=s), 6)
                 for s in range(8))
    assert events >= 20


def test_same_object_same_id_under_shuffled_region_order():
    frames = moving_objects(10, objects=4, max_speed=0.0, seed=3)
    hist = run(frames, Tracker(), np.eye(4, E) * 3, seed=1)
    assert hist[1] == hist[-1] and len(set(hist[-1].values())) == 4 and 0 not in hist[-1].values()


def test_an_object_that_returns_after_its_track_died_gets_a_new_id():
    cfg = TrackerConfig(max_misses=3)
    frames = moving_objects(30, objects=3, max_speed=5.0, seed=2, leave=(10, 16))  # hidden 6 frames > 3
    hist = run(frames, Tracker(cfg), np.random.default_rng(0).standard_normal((3, E)))
    before, after = hist[9][0], hist[18][0]
    assert before and after and before != after
    assert after not in {t for h in hist[:10] for t in h.values()}  # ids are never reused
    # The others kept theirs throughout.
    assert hist[9][1] == hist[29][1] and hist[9][2] == hist[29][2]


def test_a_short_occlusion_keeps_the_id():
    frames = moving_objects(30, objects=3, max_speed=5.0, seed=2, leave=(10, 13))  # hidden 3 frames <= 10
    hist = run(frames, Tracker(TrackerConfig(max_misses=10)), np.random.default_rng(0).standard_normal((3, E)))
    assert hist[9][0] and hist[9][0] == hist[14][0]


def test_tracks_are_confirmed_after_n_hits_and_spurious_regions_take_no_id():
    frames = moving_objects(6, objects=2, max_speed=3.0, seed=4)
    hist = run(frames, Tracker(TrackerConfig(confirm_hits=3)), np.eye(2, E) * 2)
    assert all(t == 0 for t in hist[0].values()) and all(t == 0 for t in hist[1].values())
    assert all(t > 0 for t in hist[2].values())


def test_smoothed_tokens_are_a_normalised_moving_average():
    cfg = TrackerConfig(token_smoothing=0.5, confirm_hits=1)
    tr = Tracker(cfg)
    f = moving_objects(1, objects=1, max_speed=0.0, seed=0)[0]
    a, b = np.eye(1, E), np.eye(1, E, 1)
    rng = np.random.default_rng(0)
    tr.update(as_result(f, a, rng, noise=0.0)[0])
    upd = tr.update(as_result(f, b, rng, noise=0.0)[0])
    expect = (0.5 * a + 0.5 * b) / np.linalg.norm(0.5 * a + 0.5 * b)  # oracle by hand
    assert np.allclose(upd.tokens.numpy(), expect, atol=1e-6)


def test_shift_and_iou_by_hand():
    m = torch.zeros(1, 10, 10)
    m[0, 2:5, 2:5] = 1
    moved = shift_masks(m, torch.tensor([[3.0, 1.0]]))
    expect = torch.zeros(1, 10, 10)
    expect[0, 3:6, 5:8] = 1
    assert torch.equal(moved, expect)
    assert mask_iou(m, expect).item() == 0.0
    half = torch.zeros(1, 10, 10)
    half[0, 2:5, 3:6] = 1  # 6 shared of 12 total
    assert mask_iou(m, half).item() == pytest.approx(6 / 12)


def test_bad_tracker_settings_are_refused():
    for bad in (dict(iou_weight=float("nan")), dict(max_misses=-1), dict(confirm_hits=0), dict(grid=True)):
        with pytest.raises(ValueError):
            Tracker(TrackerConfig(**bad))


@pytest.mark.parametrize("cells", [1, 3, 8])
def test_dilate_equals_a_max_filter(cells):
    from textregion_ros.masks.base import dilate
    m = (torch.rand(5, 30, 40, generator=torch.Generator().manual_seed(cells)) > 0.97).float()
    ref = torch.nn.functional.max_pool2d(m[:, None], 2 * cells + 1, stride=1, padding=cells)[:, 0]
    assert torch.equal(dilate(m, cells), ref)
