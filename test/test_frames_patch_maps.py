"""Target mode without SAM2: the query's patch map and the choice among candidate masks, on drawn scenes
with the planted encoder (a patch's feature is its colour's class; a region's token its majority class)."""
import numpy as np
import pytest
import torch

from eval_data import CLASSES, PlantedEncoder, draw
from textregion_ros.config import preset
from textregion_ros.masks.superpixels import Superpixels
from textregion_ros.pipeline import Pipeline
from textregion_ros.frames.patch_maps import ground_candidates, patch_similarity
from textregion_ros.tokens import encode_value_map


@pytest.fixture(scope="module")
def planted():
    enc = PlantedEncoder()
    cfg = preset("cpu-lite", random_weights=True, tiles="none", vocabulary=tuple(CLASSES),
                 background=("background; wall; floor",))
    pipe = Pipeline(cfg, encoder=enc, mask_source=Superpixels(8))
    label, inst, rgb = draw(np.random.default_rng(3), 224, 288)
    img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    enc.views.clear()
    fmap = encode_value_map(enc, img, "none", True, pipe.global_weight)
    return pipe, enc, fmap, inst, img


@pytest.mark.parametrize("cls", range(len(CLASSES)))
def test_the_patch_map_peaks_on_the_queried_object_from_the_same_pass(planted, cls):
    pipe, enc, fmap, inst, _ = planted
    sim = patch_similarity(enc, fmap, pipe.embed_queries([CLASSES[cls]]))
    gh, gw = sim.shape
    h, w = inst.shape
    # Each cell's majority object, from the pixels its patch covers (the view is the frame resized).
    ys, xs = (np.arange(h) * gh // h), (np.arange(w) * gw // w)
    cell = ys[:, None] * gw + xs[None, :]
    valid = inst != 255
    votes = np.zeros((gh * gw, len(CLASSES) + 1))
    np.add.at(votes, (cell[valid], inst[valid]), 1)
    majority = votes.argmax(1)
    top = np.flatnonzero(sim.flatten().numpy() >= float(sim.max()) - 1e-6)
    # Every best cell covers the object; a border cell whose mean colour is the object's may hold less than
    # half of its pixels, so the majority is asked of most cells, not all.
    assert (votes[top, cls + 1] > 0).all() and (majority[top] == cls + 1).mean() >= 0.75, (CLASSES[cls], top)
    assert (majority == cls + 1).sum() > 0 and enc.views == [1], "the map reused the frame's encoder pass"


def test_the_right_candidate_wins_with_a_margin_and_an_absent_query_scores_far_lower(planted):
    pipe, _, fmap, inst, _ = planted
    rng = np.random.default_rng(0)
    true = [torch.from_numpy(inst == c + 1) for c in range(len(CLASSES))]
    blobs = [torch.from_numpy(rng.random(inst.shape) < 0.02) for _ in range(2)]  # speckle: mostly background
    candidates = torch.stack(true + blobs).float()
    for cls in range(len(CLASSES)):
        maskset, tokens, (region, prob, _, margin, found) = ground_candidates(
            pipe.target_parts(), fmap, candidates, pipe.embed_queries([CLASSES[cls]]))
        chosen = maskset.masks[int(region[0])]
        assert torch.equal(chosen.bool(), true[cls]), CLASSES[cls]
        assert bool(found[0]) and float(margin[0]) > 0 and float(prob[0]) > 0.99
    # Planted text vectors are random, so an unknown word's score is arbitrary; what holds is the gap.
    _, _, (_, prob, _, _, _) = ground_candidates(pipe.target_parts(), fmap, candidates,
                                                   pipe.embed_queries(["unicorn"]))
    assert float(prob[0]) < 0.99
