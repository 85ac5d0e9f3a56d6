"""A target-mode frame end to end without SAM2: the planted encoder (a patch's feature is its colour's class)
and a stand-in prompter that answers a point with the drawn object under it, as SAM2 would answer it on a
real image. What is checked: the prompts land where the query is, all queries' prompts are decoded in one
pass per prompt shape, the right object is grounded with everything-mode's rule, an absent query scores
far lower, and the schedule of everything / target / hybrid frames."""
import numpy as np
import pytest
import torch

from eval_data import CLASSES, PlantedEncoder, draw
from textregion_ros.config import preset
from textregion_ros.masks.sam2_prompted import PromptMasks
from textregion_ros.masks.superpixels import Superpixels
from textregion_ros.pipeline import Pipeline
from textregion_ros.results import Grounding
from textregion_ros.frames.schedule import FrameScheduler
from textregion_ros.frames.target import ground_own


class ObjectUnderPoint:
    """Prompter stand-in: for each prompt, K = 3 masks (as logits): the object under its first positive point,
    the union of the objects under all its positives, and the whole frame (a useless candidate)."""

    def __init__(self, inst: np.ndarray):
        self.inst = torch.from_numpy(inst.astype(np.int64))
        self.calls = []

    def encode(self, image01):
        return "features"

    def prompt(self, feats, points, labels, frame_hw, boxes=None):
        assert feats == "features"
        self.calls.append((points.clone(), labels.clone(), None if boxes is None else boxes.clone()))
        masks = []
        for pts, lab in zip(points, labels):
            ids = [int(self.inst[int(y), int(x)]) for (x, y), l in zip(pts.tolist(), lab.tolist()) if l == 1]
            first = self.inst == ids[0]
            union = torch.isin(self.inst, torch.tensor(ids))
            masks.append(torch.stack([first, union, torch.ones_like(first)]))
        m = torch.stack(masks).float()
        return PromptMasks(m * 16 - 8, torch.full(m.shape[:2], 0.9))


@pytest.fixture(scope="module")
def scene():
    label, inst, rgb = draw(np.random.default_rng(3), 224, 288)
    inst = np.where(inst == 255, 0, inst)  # 0: no object
    cfg = preset("cpu-lite", random_weights=True, tiles="none", vocabulary=tuple(CLASSES),
                 background=("background; wall; floor",), segmentation="target")
    prompter = ObjectUnderPoint(inst)
    pipe = Pipeline(cfg, encoder=PlantedEncoder(), mask_source=Superpixels(8))
    pipe.prompter = prompter  # superpixels take no prompts: the stand-in answers them
    return pipe, prompter, inst, rgb


@pytest.mark.parametrize("cls", range(len(CLASSES)))
def test_the_query_prompts_its_object_and_grounds_it(scene, cls):
    pipe, prompter, inst, rgb = scene
    prompter.calls.clear()
    result = pipe.process_target(rgb, pipe.embed_queries([CLASSES[cls]]))
    assert result.kind == "target" and len(result) == 1
    for points, labels, _ in prompter.calls:
        for (x, y), l in zip(points.reshape(-1, 2).tolist(), labels.flatten().tolist()):
            on = inst[int(y), int(x)] == cls + 1
            assert on if l == 1 else not on, (CLASSES[cls], x, y, l)
    g = result.groundings[0]
    assert g.found and g.region == 0 and g.margin > 0 and g.prob > 0.99
    chosen = result.masks.at_frame()[0] >= 0.5
    assert torch.equal(chosen, torch.from_numpy(inst == cls + 1))


def test_several_queries_are_decoded_together_and_an_absent_one_scores_far_lower(scene):
    pipe, prompter, inst, rgb = scene
    prompter.calls.clear()
    queries = [CLASSES[0], "unicorn", CLASSES[2]]
    result = pipe.process_target(rgb, pipe.embed_queries(queries))
    shapes = [(c[0].shape[1], c[2] is not None) for c in prompter.calls]
    assert len(shapes) == len(set(shapes)), "one decoder call per prompt shape, for all queries at once"
    a, absent, c = result.groundings
    assert a.found and c.found and a.region != c.region
    assert torch.equal(result.masks.at_frame()[a.region] >= 0.5, torch.from_numpy(inst == 1))
    assert torch.equal(result.masks.at_frame()[c.region] >= 0.5, torch.from_numpy(inst == 3))
    # Planted text vectors are random: an unknown word's score is arbitrary, what holds is the gap.
    assert absent.prob < 0.99 and not (absent.found and absent.prob > a.prob)


def test_a_previous_box_is_one_more_prompt_with_every_point(scene):
    pipe, prompter, inst, rgb = scene
    prompter.calls.clear()
    box = torch.tensor([10.0, 20.0, 100.0, 120.0])
    pipe.process_target(rgb, pipe.embed_queries([CLASSES[1]]), {CLASSES[1]: box})
    boxed = [c for c in prompter.calls if c[2] is not None]
    assert len(boxed) == 1 and torch.equal(boxed[0][2][0], box)
    widest = max(c[0].shape[1] for c in prompter.calls if c[2] is None)
    assert boxed[0][0].shape[1] == widest  # the box comes with all the query's points


def test_each_query_chooses_among_its_own_candidates_only():
    # Two queries, three candidates: candidate 0 is query 1's best by far, but it is query 0's candidate.
    probs = torch.tensor([[0.9, 0.99], [0.2, 0.1], [0.1, 0.3]])
    cos = torch.tensor([[0.5, 0.9], [0.3, 0.1], [0.2, 0.4]])
    owner = torch.tensor([0, 0, 1])
    region, prob, best_cos, margin, found = ground_own(probs, cos, owner, 0.25)
    assert region.tolist() == [0, 2]
    assert prob.tolist() == pytest.approx([0.9, 0.3]) and best_cos.tolist() == pytest.approx([0.5, 0.4])
    assert margin.tolist() == pytest.approx([0.7, 0.3]) and found.tolist() == [True, True]
    region, _, _, _, found = ground_own(probs, cos, torch.tensor([0, 0, 0]), 0.25)
    assert region.tolist() == [0, -1] and found.tolist() == [True, False]  # query 1 has no candidate


def result_of(kind, found):
    from textregion_ros.masks.base import MaskSet
    m = torch.zeros(1, 8, 8)
    m[0, 2:5, 3:7] = 1.0
    groundings = [Grounding("mug", 0 if found else -1, 0.9 if found else 0.1, 0.3, 0.1, found)]
    from types import SimpleNamespace
    return SimpleNamespace(kind=kind, groundings=groundings, masks=MaskSet(m, torch.ones(1), (8, 8)), frame_hw=(8, 8))


def cfg(segmentation, full_every=10):
    from types import SimpleNamespace
    return SimpleNamespace(segmentation=segmentation, full_every=full_every)


class CarryState:
    """The carry's state as the scheduler reads it (carrying one query or not); its SAM2 steps are tested with
    real sam2 modules in test_pipeline.py."""

    def __init__(self, query=""):
        self.query = query

    def carrying(self, query):
        return bool(self.query) and query == self.query


def test_the_schedule_of_each_mode():
    s = FrameScheduler()
    assert s.kind(cfg("everything"), True) == "full" and s.kind(cfg("target"), False) == "full"
    assert s.kind(cfg("target"), True) == "target"  # target mode never needs a full frame while there is a query
    assert s.kind(cfg("target"), True, force_full=True) == "full"  # a service answers on a full frame
    kinds = []
    for _ in range(12):
        kinds.append(s.kind(cfg("hybrid", 4), True))
        s.done(result_of(kinds[-1], True), "mug")
    assert kinds == ["full", "target", "target", "target"] * 3
    assert torch.equal(s.boxes["mug"], torch.tensor([3.0, 2.0, 7.0, 5.0]))  # the found region's box, xyxy
    s.done(result_of("target", False), "mug")  # lost: the next frame is full, and no box is kept
    assert s.kind(cfg("hybrid", 4), True) == "full" and s.boxes == {}
    s.done(result_of("full", True), "other")  # the watched query is not on the frame: lost
    assert s.kind(cfg("hybrid", 4), True) == "full"


def test_one_knob_spaces_full_frames_for_the_sam2_carry_too():
    s = FrameScheduler(CarryState("mug"))
    s.done(result_of("full", True), "mug")  # a carry starts from a full frame
    kinds = []
    for _ in range(9):
        kinds.append(s.kind(cfg("everything", 3), True, "mug"))
        s.done(result_of(kinds[-1], True), "mug")
    assert kinds == ["propagated", "propagated", "full"] * 3
    assert s.kind(cfg("everything", 3), True, "cup") == "full"  # another active query: nothing of it is carried
    assert s.kind(cfg("everything", 1), True, "mug") == "full"  # full_every 1: always full
    assert FrameScheduler(CarryState("")).kind(cfg("everything", 3), True, "mug") == "full"


def test_the_old_names_of_full_every_still_work_with_a_warning():
    from textregion_ros.config import preset, renamed
    with pytest.warns(DeprecationWarning, match="hybrid_every is deprecated.*full_every"):
        assert preset("cpu-lite", hybrid_every=4).full_every == 4
    with pytest.warns(DeprecationWarning, match="propagate_every"):
        assert preset("cpu-lite").replace(propagate_every=2).full_every == 2
    said = []
    assert renamed({"hybrid_every": 4, "full_every": 7}, said.append) == {"full_every": 7}  # the new name wins
    assert len(said) == 1 and "wins" in said[0]
    with pytest.raises(ValueError, match="unknown config keys"):
        preset("cpu-lite", hybrid_evry=4)
