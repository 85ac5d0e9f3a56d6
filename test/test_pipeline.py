"""The Pipeline end to end on real models (random weights), and its handling of bad input."""
import numpy as np
import pytest
import torch

from textregion_ros.frames.carry import SamCarry

from textregion_ros.compose import boxes_and_areas, instance_map

from textregion_ros.config import PRESETS, PipelineConfig, preset
from textregion_ros.masks import Superpixels
from textregion_ros.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipe(clip_encoder):
    cfg = preset("cpu-lite", random_weights=True, mask_source="given", vocabulary=("mug", "ball"),
                 background=("wall",), tiles="2x2", remove_global_patches=False)
    return Pipeline(cfg, encoder=clip_encoder, mask_source=Superpixels(n_segments=16))


def box_masks(h=240, w=320):
    m = torch.zeros(3, h, w)
    m[0, 20:120, 30:150] = 1
    m[1, 100:200, 160:300] = 1
    m[2, 0:60, 200:320] = 1
    return m


def test_process_with_given_masks_gives_consistent_outputs(pipe, scene):
    rgb = scene.rgb[:240, :320]
    r = pipe.process(rgb, queries=["mug", "ball; sphere"], masks=box_masks())
    assert len(r) == 3 and r.tokens.shape == (3, 512)
    assert torch.allclose(r.tokens.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert r.labels == ("mug", "ball", "wall") and r.num_background == 1
    assert ((r.classes.prob > 0) & (r.classes.prob <= 1)).all()
    g = r.groundings
    assert [x.query for x in g] == ["mug", "ball; sphere"] and all(0 <= x.region < 3 for x in g)
    inst = instance_map(r)
    assert inst.shape == (240, 320) and inst.dtype == torch.int32
    assert set(inst.unique().tolist()) == {0, 1, 2, 3}
    assert (inst[150, 10] == 0) and (inst[50, 50] == 1)
    boxes, areas = boxes_and_areas(r)
    assert boxes[0].tolist() == [30.0, 20.0, 150.0, 120.0] and areas[0] == 100 * 120
    label, conf = r.label_map()
    assert label.shape == (240, 320) and (conf <= 1).all()


def test_instance_map_ties_go_to_the_higher_score(pipe, scene):
    m = torch.zeros(2, 240, 320)
    m[:, 50:100, 50:100] = 1  # identical masks: every pixel is a tie
    r = pipe.process(scene.rgb[:240, :320], masks=m)
    winner = int(torch.argmax(r.classes.prob)) + 1
    assert set(instance_map(r)[50:100, 50:100].unique().tolist()) == {winner}


def test_superpixel_source_and_multiresolution_tokens(pipe, scene):
    r = pipe.process(scene.rgb)
    assert len(r) > 4 and r.masks.counts["tokens"] == len(r)


def test_global_patch_removal_returns_kept_indices(clip_encoder, scene):
    cfg = preset("cpu-lite", random_weights=True, vocabulary=("a",), background=(), global_patch_threshold=0.0)
    p = Pipeline(cfg, encoder=clip_encoder, mask_source=Superpixels(8))
    masks = box_masks()
    masks[1] = 0  # an empty region is dropped, the others keep their order
    r = p.process(scene.rgb[:240, :320], masks=masks)
    kept = [next(i for i in range(3) if torch.equal(m, masks[i])) for m in r.masks.masks]
    assert 1 <= len(r) == r.masks.counts["tokens"] and 1 not in kept and kept == sorted(kept)
    # Without removal exactly the two non-empty regions remain, in input order.
    p.config = p.config.replace(remove_global_patches=False)
    r = p.process(scene.rgb[:240, :320], masks=masks)
    assert [next(i for i in range(3) if torch.equal(m, masks[i])) for m in r.masks.masks] == [0, 2]


def test_zero_regions_is_an_empty_result(pipe, scene):
    r = pipe.process(scene.rgb[:240, :320], queries=["mug"], masks=torch.zeros(0, 240, 320))
    assert len(r) == 0 and instance_map(r).sum() == 0
    assert r.groundings[0].region == -1 and not r.groundings[0].found
    assert r.label_map()[0].shape == (240, 320)


def test_bad_input_raises_clear_errors(pipe, scene):
    with pytest.raises(ValueError, match="uint8 RGB"):
        pipe.process(scene.rgb.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        pipe.process(scene.rgb[..., 0])
    with pytest.raises(ValueError, match="outside"):
        pipe.process(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="given masks"):
        pipe.process(scene.rgb, masks=torch.zeros(240, 320))
    with pytest.raises(ValueError, match="non-negative"):
        pipe.process(scene.rgb, masks=-torch.ones(1, 480, 640))


def test_runtime_updates_and_restart_only_knobs(pipe):
    pipe.update(abstain_threshold=0.9, vocabulary=("cup", "plate"))
    assert pipe.config.abstain_threshold == 0.9 and pipe.labels[:2] == ("cup", "plate")
    with pytest.raises(ValueError, match="restart"):
        pipe.update(encoder_model="ViT-L-14")
    pipe.update(vocabulary=("mug", "ball"), abstain_threshold=0.5)


def test_presets_and_config_validation():
    assert set(PRESETS) == {"paper", "realtime", "cpu-lite"}
    paper = preset("paper")
    assert (paper.encoder_model, paper.sam2_model, paper.points_per_side) == ("ViT-L-14-336", "large", 16)
    assert paper.global_patch_threshold == 0.07 and paper.region_logit_scale == 50.0
    rt = preset("realtime")
    assert (rt.encoder_model, rt.sam2_model, rt.tiles, rt.compile) == ("ViT-B-16", "tiny", "2x2", True)
    assert paper.tiles == "auto" and paper.clip_head == "segmentation" and rt.clip_head == "referring"
    assert preset("cpu-lite").torch_device().type == "cpu"
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fast")
    with pytest.raises(ValueError, match="unknown config keys"):
        PipelineConfig().replace(pointz=3)
    for bad in ("2x0", "9x1", (2, 2), "two"):
        with pytest.raises(ValueError, match="tiles"):
            PipelineConfig().replace(tiles=bad)
    for name, bad in (("region_logit_scale", float("nan")), ("pred_iou_thresh", -1.0), ("max_masks", -3),
                      ("abstain_threshold", float("inf")), ("fuse_thresh", 2.0)):
        with pytest.raises(ValueError, match=name):
            PipelineConfig().replace(**{name: bad})
    for bad in ([";"], [" ; "], ["ok", "a\x00b"]):
        with pytest.raises(ValueError, match="vocabulary"):
            PipelineConfig().replace(vocabulary=tuple(bad))
    with pytest.raises(ValueError, match="sam2_input_size"):
        PipelineConfig().replace(sam2_input_size=500)
    with pytest.raises(ValueError, match="fp32"):
        PipelineConfig(device="cpu", dtype="bf16").torch_dtype()


def test_grounding_can_abstain_without_background_labels(clip_encoder, scene):
    """With no background labels a CLIP query competes with the word "background": its probability is
    a real probability (it used to be 1 for every region, so every query was "found")."""
    cfg = preset("cpu-lite", random_weights=True, mask_source="given", vocabulary=("mug", "ball"), background=())
    p = Pipeline(cfg, encoder=clip_encoder, mask_source=Superpixels(8))
    g = p.process(scene.rgb[:240, :320], queries=["mug"], masks=box_masks()).groundings[0]
    assert 0.0 < g.prob < 1.0
    p.config = p.config.replace(abstain_threshold=min(1.0, g.prob + 1e-3))
    assert not p.process(scene.rgb[:240, :320], queries=["mug"], masks=box_masks()).groundings[0].found


def test_track_gives_stable_ids_and_a_lock_on_real_tokens(pipe):
    """Pipeline.track on the encoder's own tokens (random weights) for a moving scene."""
    from textregion_ros.eval.scene import moving_objects
    from textregion_ros.tracks.locks import TargetLocks
    from textregion_ros.tracks.tracker import Tracker

    tracker, locks = Tracker(), TargetLocks()
    frames = moving_objects(5, width=320, height=240, objects=3, max_speed=6.0, seed=1)
    old = pipe.config.abstain_threshold
    pipe.update(abstain_threshold=0.0)  # random weights: make "found" certain so the lock engages
    try:
        seen = []
        for f in frames:
            r = pipe.track(pipe.process(f.rgb, queries=["mug"], masks=torch.from_numpy(f.masks)), tracker, locks)
            seen.append(dict(zip(f.object_ids.tolist(), r.track_ids.tolist())))
            assert torch.allclose(r.tokens.float().norm(dim=-1), torch.ones(len(r)), atol=1e-4)
            g = r.groundings[0]
    finally:
        pipe.update(abstain_threshold=old)
    assert all(t > 0 for t in seen[-1].values()) and len(set(seen[-1].values())) == 3
    assert seen[1] == seen[-1]
    assert g.locked and g.track_id == r.track_ids[g.region]


def test_locked_target_is_carried_between_full_frames_by_sam2(clip_encoder):
    """target_tracking sam2: the locked target's mask comes from SAM2's memory between full frames,
    as a one-region result that keeps the target's track id, label and lock."""
    from textregion_ros.eval.scene import moving_objects
    from textregion_ros.tracks.locks import TargetLocks
    from textregion_ros.tracks.tracker import Tracker

    cfg = preset("cpu-lite", random_weights=True, target_tracking="sam2", abstain_threshold=0.0,
                 vocabulary=("mug", "ball"), background=("wall",))
    torch.manual_seed(0)  # random SAM2 weights whose propagation keeps the object (see the node test)
    p = Pipeline(cfg, encoder=clip_encoder)
    assert p.propagator is not None and p.propagator.model.image_size == cfg.sam2_input_size
    frames = moving_objects(4, width=320, height=240, objects=3, max_speed=6.0, seed=1)
    tracker, locks = Tracker(), TargetLocks()
    for f in frames[:2]:  # two full frames: tracks confirmed, the target locked
        r = p.track(p.process(f.rgb, queries=["mug"], masks=torch.from_numpy(f.masks)), tracker, locks)
    g = r.groundings[0]
    assert g.locked
    carry = SamCarry(p.propagator, p.device)
    carry.start(frames[1].rgb, r, 0)
    assert carry.carrying("mug") and not carry.carrying("cup")
    carried = carry.step(frames[2].rgb)
    if carried is None:  # random SAM2 may lose the object at once; then a full frame is due
        assert not carry.carrying("mug") and carry.step(frames[3].rgb) is None
        return
    assert len(carried) == 1 and carried.masks.is_logits and carried.frame_hw == (240, 320)
    cg = carried.groundings[0]
    assert (cg.query, cg.region, cg.track_id, cg.locked) == ("mug", 0, g.track_id, True)
    assert carried.track_ids.tolist() == [g.track_id]
    assert int(carried.classes.label[0]) == int(r.classes.label[g.region])
    assert instance_map(carried).shape == (240, 320)


def test_sam2_target_tracking_needs_sam2_masks():
    with pytest.raises(ValueError, match="target_tracking"):
        preset("cpu-lite", mask_source="superpixels", target_tracking="sam2")
    with pytest.raises(ValueError, match="target_tracking"):
        preset("cpu-lite", target_tracking="xmem")


def test_views_are_kept_only_when_asked(pipe, scene):
    """The evaluation's dense fill reuses the encoder pass; the node's results must not hold it."""
    assert pipe.process(scene.rgb).views is None
    feats, plan = pipe.process(scene.rgb, keep_views=True).views
    assert feats.block_input is not None and plan.grid == (2, 2)
