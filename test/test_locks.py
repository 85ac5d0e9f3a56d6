"""Target lock (tracks/locks.py), driven frame by frame with hand-set scores and track ids."""
import numpy as np

from textregion_ros.results import Grounding
from textregion_ros.tracks.locks import TargetLock, TargetLocks


def frame(lock, probs, tids, query="red mug", alive=None, abstain=0.5):
    """The plain grounding a pipeline would give (best region by score), then the lock on top."""
    probs = np.asarray(probs, float)
    tids = np.asarray(tids, np.uint32)
    best = int(np.argmax(probs)) if len(probs) else -1
    g = Grounding(query, best, float(probs[best]) if best >= 0 else 0.0, 0.0, 0.0,
                  bool(best >= 0 and probs[best] >= abstain))
    alive = set(int(t) for t in tids) if alive is None else alive
    return lock.update(g, probs, probs / 2, tids, lambda t: t in alive)


def test_locks_on_the_found_track_and_holds_it_while_a_rival_is_within_the_margin():
    lock = TargetLock(margin=0.1, frames=3)
    g = frame(lock, [0.2, 0.8, 0.7], [5, 6, 7])
    assert (g.region, g.track_id, g.locked, g.found) == (1, 6, True, True)
    for _ in range(10):  # region 2 scores higher, but by less than the margin
        g = frame(lock, [0.2, 0.75, 0.84], [5, 6, 7])
        assert (g.track_id, g.region, g.locked) == (6, 1, True)
        assert g.margin < 0  # the reported margin tells the planner a rival scores higher


def test_a_rival_must_beat_the_margin_on_k_consecutive_frames():
    lock = TargetLock(margin=0.1, frames=3)
    frame(lock, [0.9, 0.3], [1, 2])
    for _ in range(5):  # beats it by more than the margin for K-1 frames, then falls back: no switch
        assert frame(lock, [0.5, 0.9], [1, 2]).track_id == 1
        assert frame(lock, [0.5, 0.9], [1, 2]).track_id == 1
        assert frame(lock, [0.9, 0.3], [1, 2]).track_id == 1
    assert frame(lock, [0.5, 0.9], [1, 2]).track_id == 1
    assert frame(lock, [0.5, 0.9], [1, 2]).track_id == 1
    g = frame(lock, [0.5, 0.9], [1, 2])  # third consecutive frame
    assert (g.track_id, g.region, g.locked) == (2, 1, True)


def test_the_target_is_followed_through_region_reordering():
    lock = TargetLock()
    frame(lock, [0.1, 0.9, 0.2], [3, 4, 5])
    g = frame(lock, [0.2, 0.1, 0.85], [5, 3, 4])  # same objects, another order
    assert (g.region, g.track_id) == (2, 4)


def test_unconfirmed_regions_neither_lock_nor_challenge():
    lock = TargetLock(margin=0.0, frames=1)
    g = frame(lock, [0.9, 0.1], [0, 2])
    assert not g.locked and g.track_id == 0
    frame(lock, [0.1, 0.9], [0, 2])
    assert frame(lock, [0.99, 0.6], [0, 2]).track_id == 2  # an id-less region cannot take over


def test_a_hidden_target_is_grounded_afresh_and_comes_back_with_its_track():
    lock = TargetLock()
    frame(lock, [0.9, 0.3], [1, 2])
    g = frame(lock, [0.7], [2], alive={1, 2})  # track 1 missing this frame, still alive
    assert (g.track_id, g.locked, g.region) == (2, False, 0)
    g = frame(lock, [0.6, 0.7], [1, 2])
    assert (g.track_id, g.locked) == (1, True)


def test_a_lost_track_clears_the_lock_and_the_query_is_grounded_afresh():
    lock = TargetLock()
    frame(lock, [0.9, 0.3], [1, 2])
    g = frame(lock, [0.8], [2], alive={2})  # track 1 died
    assert (g.track_id, g.locked) == (2, True)


def test_a_new_or_empty_query_resets_the_lock():
    lock = TargetLock()
    frame(lock, [0.9, 0.3], [1, 2])
    g = frame(lock, [0.3, 0.9], [1, 2], query="laptop")
    assert g.track_id == 2 and g.locked
    g = frame(lock, [0.3, 0.9], [1, 2], query="")
    assert not g.locked
    g = frame(lock, [0.9, 0.3], [1, 2], query="laptop")
    assert g.track_id == 1


def test_not_found_means_no_lock():
    lock = TargetLock()
    g = frame(lock, [0.3, 0.2], [1, 2])
    assert not g.locked and not g.found


def test_one_lock_per_query_and_dropped_queries_forget_theirs():
    locks = TargetLocks(margin=0.1, frames=2)
    tids = np.array([1, 2], np.uint32)
    probs = np.array([[0.9, 0.2], [0.3, 0.8]])
    gs = [Grounding("a", 0, 0.9, 0.4, 0.6, True), Grounding("b", 1, 0.8, 0.4, 0.5, True)]
    out = locks.update(gs, probs, probs / 2, tids, lambda t: True)
    assert [(g.track_id, g.locked) for g in out] == [(1, True), (2, True)]
    locks.update(gs[:1], probs[:, :1], probs[:, :1] / 2, tids, lambda t: True)
    assert locks.target("b") is None and locks.target("a") == 1
