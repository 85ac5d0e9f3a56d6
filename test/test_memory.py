"""The object memory (no ROS): sweeps around a ray-cast room with known poses, given masks and
planted-encoder tokens, checked against where each object really is."""
import hashlib
import os

import numpy as np
import pytest
import torch

from eval_data import PlantedEncoder
from memory_scene import backproject, circle, look_at, move, render, room, thing_at, visible_ids
from textregion_ros.classify import query_scores
from textregion_ros.encoders.text import TextEmbedder
from textregion_ros.memory import (Detection, MemoryConfig, MemoryFileError, ObjectMemory, Observation, load_memory,
                                   save_memory)
from textregion_ros.memory import persist

TEXT = TextEmbedder(PlantedEncoder(), "short")
BACKGROUND = TEXT.embed_labels(["background; wall; floor"])
HEADER = {"encoder": "planted|", "token_dim": 128, "frame": "map"}


def token(name, rng=None, jitter=0.0):
    t = TEXT.embed_labels([name]).embeddings[0].numpy().astype(np.float64)
    if jitter:  # a view's token is never exactly the class's text embedding
        t = t + jitter * rng.standard_normal(t.shape)
    return (t / np.linalg.norm(t)).astype(np.float32)


def observe(things, pose, noise=0.0, holes=0.0, seed=0, rng=None):
    r = render(things, pose, noise=noise, holes=holes, seed=seed)
    rng = rng or np.random.default_rng(seed)
    dets = [Detection(token(things[i - 1].name, rng, 0.05), backproject(r, r.instance == i), things[i - 1].name, 0.9)
            for i in visible_ids(r)]
    return Observation(seed, "head", pose, r.K, r.depth_m, dets), r


def sweep(memory, things, poses, noise=0.0, holes=0.0, seed0=0):
    last = None
    for k, pose in enumerate(poses):
        obs, last = observe(things, pose, noise, holes, seed=seed0 + k + 1)
        obs.stamp_ns = (seed0 + k + 1) * 10**8
        memory.integrate(obs)
    return last


def nearest_things(memory, things):
    """object id -> (nearest thing's name, centroid error)."""
    out = {}
    for oid, o in memory.objects.items():
        errs = [np.linalg.norm(o.centroid - t.centre) for t in things]
        out[oid] = (things[int(np.argmin(errs))].name, float(min(errs)))
    return out


def find(memory, query):
    ids, toks = memory.tokens()
    probs, cos = query_scores(torch.from_numpy(toks), TEXT.embed_labels([query]), BACKGROUND)
    return memory.rank(ids, probs[:, 0].numpy(), cos[:, 0].numpy())


@pytest.fixture(scope="module")
def swept():
    things = room()
    memory = ObjectMemory(MemoryConfig())
    sweep(memory, things, circle(48))
    # Then the camera turns away from the room: nothing is in view, and nothing may be forgotten for it.
    away = [look_at((1.6, 0.0, 0.9), (4.0, y, 0.0)) for y in (-1.0, 0.0, 1.0)]
    last = sweep(memory, things, away, seed0=100)
    return memory, things, last


def test_one_object_per_thing_within_a_centimetre_on_noise_free_depth(swept):
    memory, things, _ = swept
    found = nearest_things(memory, things)
    assert sorted(name for name, _ in found.values()) == sorted(t.name for t in things), found
    assert max(err for _, err in found.values()) <= 0.01, found
    for o in memory.objects.values():
        assert o.label == nearest_things(memory, things)[o.id][0] and o.observations >= 10


def test_within_three_centimetres_with_noise_and_holes():
    things = room()
    memory = ObjectMemory(MemoryConfig())
    sweep(memory, things, circle(48, start_deg=3.0), noise=0.01, holes=0.05, seed0=1000)
    found = nearest_things(memory, things)
    assert sorted(name for name, _ in found.values()) == sorted(t.name for t in things), found
    assert max(err for _, err in found.values()) <= 0.03, found


def test_find_returns_every_class_after_it_left_the_view_and_abstains_otherwise(swept):
    memory, things, last = swept
    in_view = {things[i - 1].name for i in visible_ids(last)}
    names = nearest_things(memory, things)
    assert not in_view and len(memory) == len(things), "every object is out of view, and remembered"
    for th in things:
        best, prob, _ = find(memory, th.name)[0]
        assert names[best.id][0] == th.name and prob >= 0.99, (th.name, names[best.id], prob)
    # Planted text vectors are random, so an unknown word's score against the background is arbitrary;
    # what must hold is the gap: at an abstain threshold of 0.99 every class is found and it is not.
    best, prob, _ = find(memory, "purple elephant")[0]
    assert prob < 0.99


def test_a_moved_object_ends_up_once_at_its_new_place():
    things = room()
    memory = ObjectMemory(MemoryConfig())
    sweep(memory, things, circle(40))
    moved = move(things, "orange", (-0.55, -0.05))
    sweep(memory, moved, circle(40, start_deg=4.5), seed0=500)
    oranges = [o for o in memory.objects.values() if o.label == "orange"]
    assert len(oranges) == 1, [(o.id, o.centroid) for o in oranges]
    assert np.linalg.norm(oranges[0].centroid - thing_at(moved, "orange").centre) <= 0.01
    assert memory.counts["removed_unseen"] >= 1 and len(memory) == len(things)


def test_bounds_noise_and_eviction_are_kept_and_counted():
    things = room()
    cfg = MemoryConfig(max_points=50, max_objects=4, min_observations=3, noise_frames=5)
    memory = ObjectMemory(cfg)
    rng = np.random.default_rng(1)
    sweep(memory, things, circle(24))
    assert len(memory) <= 4 and memory.counts["evicted"] > 0
    assert all(len(o.keys) <= 50 for o in memory.objects.values())
    # One stray detection far from everything, never seen again: dropped as noise after noise_frames.
    stray = Detection(token("ghost"), rng.normal([3.0, 3.0, 0.5], 0.01, (100, 3)), "ghost", 0.9)
    memory.integrate(Observation(10**12, "head", circle(1)[0], np.eye(3), None, [stray]))
    assert any(o.label == "ghost" for o in memory.objects.values())
    for k in range(5):
        memory.integrate(Observation(10**12 + k, "head", circle(1)[0], np.eye(3), None, []))
    assert not any(o.label == "ghost" for o in memory.objects.values()) and memory.counts["dropped_noise"] >= 1


@pytest.mark.parametrize("dead_rows", [0, 3])
def test_duplicates_are_merged(dead_rows):
    memory = ObjectMemory(MemoryConfig(merge_every=0))
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 0.1, (400, 3))
    gone = [memory._new(Detection(token(f"gone {k}"), pts + 5.0 * (k + 1), "x", 0.9),
                        Observation(0, "c", None, None, None)).id for k in range(dead_rows)]
    a = memory._new(Detection(token("red mug"), pts[:300], "red mug", 0.9), Observation(1, "c", None, None, None))
    b = memory._new(Detection(token("red mug"), pts[100:], "red mug", 0.9), Observation(2, "c", None, None, None))
    memory._new(Detection(token("blue box"), pts, "blue box", 0.9), Observation(3, "c", None, None, None))
    memory._delete(gone[:1])  # a row left dead in the table (too few to compact it) when merging
    assert memory.table.dead == (dead_rows > 0)
    assert memory.merge_duplicates() == 1 and len(memory) == 2 + dead_rows - len(gone[:1])
    assert a.id in memory.objects and b.id not in memory.objects and memory.objects[a.id].observations == 2


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_save_then_load_gives_the_same_objects(swept, tmp_path):
    memory, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path, memory, HEADER)
    again = ObjectMemory(MemoryConfig())
    assert load_memory(path, HEADER, again) == len(memory)
    assert sorted(again.objects) == sorted(memory.objects) and again.next_id == memory.next_id
    for oid, o in memory.objects.items():
        p = again.objects[oid]
        assert np.array_equal(p.token, o.token) and np.array_equal(p.keys, o.keys)
        assert np.allclose(p.centroid, o.centroid, atol=0) and p.label_votes == o.label_votes
        assert (p.observations, p.first_seen_ns, p.last_seen_ns, p.camera) == (
            o.observations, o.first_seen_ns, o.last_seen_ns, o.camera)
    assert os.listdir(tmp_path) == ["memory.npz"], "no temporary file is left"


def _corrupt(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    open(path, "wb").write(bytes(data))


def _truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


def _huge(path):
    os.truncate(path, persist.MAX_FILE_BYTES + 1)  # sparse: no disk is used


def _garbage(path):
    open(path, "wb").write(b"not a memory file at all")


@pytest.mark.parametrize("damage,expected", [(_corrupt, "corrupt|readable|shape|impossible"),
                                             (_truncate, "truncated or corrupt"), (_huge, "above"),
                                             (_garbage, "not a readable")],
                         ids=["corrupt", "truncated", "huge", "garbage"])
def test_a_bad_file_is_refused_untouched_and_the_memory_stays(swept, tmp_path, damage, expected):
    memory, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path, memory, HEADER)
    damage(path)
    before = _digest(path) if os.path.getsize(path) < persist.MAX_FILE_BYTES else os.path.getsize(path)
    target = ObjectMemory(MemoryConfig())
    with pytest.raises(MemoryFileError, match=expected):
        load_memory(path, HEADER, target)
    assert len(target) == 0
    after = _digest(path) if os.path.getsize(path) < persist.MAX_FILE_BYTES else os.path.getsize(path)
    assert after == before


@pytest.mark.parametrize("key,value", [("encoder", "ViT-B-16|openai"), ("token_dim", 512), ("frame", "odom")])
def test_a_file_from_another_encoder_token_size_or_frame_is_refused(swept, tmp_path, key, value):
    memory, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path, memory, HEADER)
    with pytest.raises(MemoryFileError, match=key):
        load_memory(path, dict(HEADER, **{key: value}), ObjectMemory(MemoryConfig()))


def test_a_crash_mid_save_leaves_the_previous_file_whole(swept, tmp_path, monkeypatch):
    memory, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path, memory, HEADER)
    before = _digest(path)

    def dies(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(persist.np, "savez", dies)
    with pytest.raises(KeyboardInterrupt):
        save_memory(path, memory, HEADER)
    assert _digest(path) == before and os.listdir(tmp_path) == ["memory.npz"]


@pytest.mark.parametrize("n,limit,removed", [(5, 10, 0), (300, 7, 0), (300, 7, 40), (9, 8, 2)])
def test_rank_is_the_full_sort_by_probability_then_recency(n, limit, removed):
    rng = np.random.default_rng(n)
    memory = ObjectMemory(MemoryConfig(merge_every=0))
    for i in range(n):
        o = memory._new(Detection(token(f"thing {i % 17}"), rng.uniform(0, 0.05, (30, 3)) + i, "x", 1.0),
                        Observation(int(rng.integers(0, 50)), "c", None, None, None))
        o.last_seen_ns = int(rng.integers(0, 50))
    memory._delete([int(i) for i in rng.choice(sorted(memory.objects), removed, replace=False)])
    ids, _ = memory.tokens()
    assert (ids < 0).sum() == removed  # their rows are still in the table: rank must skip them
    probs = np.round(rng.uniform(0, 1, len(ids)), 1)  # many ties
    probs[ids < 0] = 1.0  # a removed row scoring highest must still not come back
    got = [(o.id, p) for o, p, _ in memory.rank(ids, probs, probs, limit)]
    live = [(i, p) for i, p in zip(ids, probs) if i >= 0]
    oracle = sorted(live, key=lambda t: (-t[1], -memory.objects[t[0]].last_seen_ns))[:limit]
    assert [p for _, p in got] == [p for _, p in oracle]
    assert [memory.objects[i].last_seen_ns for i, _ in got] == [memory.objects[i].last_seen_ns for i, _ in oracle]


def test_the_object_table_follows_every_put_and_remove():
    from textregion_ros.memory.table import ObjectTable

    rng = np.random.default_rng(5)
    table, oracle = ObjectTable(), {}
    memory = ObjectMemory(MemoryConfig())
    for step in range(600):
        if oracle and rng.random() < 0.4:
            oid = int(rng.choice(sorted(oracle)))
            table.remove(oid)
            del oracle[oid]
        else:
            o = memory._new(Detection(token(f"t{step}"), rng.uniform(0, 1, (30, 3)) + step, "x", 1.0),
                            Observation(step, "c", None, None, None))
            table.put(o)
            oracle[o.id] = o
    assert sorted(table.ids[table.ids >= 0]) == sorted(oracle)
    table.compact()
    ids, tokens = table.ids, table.tokens
    assert sorted(ids) == sorted(oracle) and table.dead == 0
    for r, oid in enumerate(ids):
        o = oracle[oid]
        assert np.array_equal(tokens[r], o.token)
        assert np.allclose(table.lo[r], o.points.min(0) - 2 * o.voxel_size)  # the hull: every voxel inside
        assert np.allclose(table.hi[r], o.points.max(0) + 2 * o.voxel_size)


def test_after_sweeps_each_table_row_is_its_objects_token_and_holds_its_voxels():
    """Fusion reads objects' tokens from the table rows: through matches, merges, moves and removals, the
    rows must stay the objects' own tokens, and each row's box must hold every voxel of its object."""
    things = room()
    memory = ObjectMemory(MemoryConfig(merge_every=3))
    sweep(memory, things, circle(20))
    sweep(memory, move(things, "orange", (-0.55, -0.05)), circle(20, start_deg=4.5), seed0=500)
    assert memory.counts["matched"] > 100 and memory.counts["removed_unseen"] >= 1
    table = memory.table
    for oid, o in memory.objects.items():
        r = table.row[oid]
        assert table.ids[r] == oid and np.array_equal(table.tokens[r], o.token)
        assert abs(np.linalg.norm(o.token) - 1) < 1e-5
        assert (table.lo[r] <= o.points.min(0)).all() and (table.hi[r] >= o.points.max(0)).all()


def saved_then_edited(memory, path, edit):
    """The memory saved to ``path``, then its arrays edited by ``edit(arrays)`` and written back as a valid .npz."""
    save_memory(path, memory, HEADER)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return open(path, "rb").read()


def test_a_file_with_malformed_label_scores_is_refused(swept, tmp_path):
    import json

    def labels_not_dicts(arrays):
        meta = json.loads(arrays["header"].tobytes().decode())
        meta["labels"] = ["not a dict"] * len(meta["labels"])
        arrays["header"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    path = str(tmp_path / "memory.npz")
    saved_then_edited(swept[0], path, labels_not_dicts)
    with pytest.raises(MemoryFileError, match="label scores"):
        load_memory(path, HEADER, ObjectMemory(MemoryConfig()))


def test_a_file_whose_voxels_are_out_of_order_is_refused(swept, tmp_path):
    """Lookups and merges search each object's keys: a file with unsorted or repeated keys would answer wrongly."""
    def two_voxels_swapped(arrays):
        off, keys = arrays["offsets"], arrays["keys"].copy()
        keys[off[1] - 2], keys[off[1] - 1] = keys[off[1] - 1], keys[off[1] - 2]  # of the first object
        arrays["keys"] = keys

    path = str(tmp_path / "memory.npz")
    before = saved_then_edited(swept[0], path, two_voxels_swapped)
    with pytest.raises(MemoryFileError, match="sorted"):
        load_memory(path, HEADER, ObjectMemory(MemoryConfig()))
    assert open(path, "rb").read() == before


def _start(path):
    """One start of a node with memory_file ``path``: (the memory it begins with, where it saves, refused)."""
    memory = ObjectMemory(MemoryConfig())
    save_path, _, refused = persist.open_memory(path, HEADER, memory)
    return memory, save_path, refused


def test_what_was_gathered_after_a_refused_file_comes_back_at_every_restart(swept, tmp_path):
    gathered, _, _ = swept
    path = str(tmp_path / "memory.npz")
    _garbage(path)
    corrupt = _digest(path)
    # Start 1: the file is refused and kept; the memory starts empty and saves go beside it.
    memory, save_path, refused = _start(path)
    assert len(memory) == 0 and [p for p, _ in refused] == [path] and save_path == path + ".recovered.npz"
    save_memory(save_path, gathered, HEADER)  # the run gathers objects and saves them
    for _ in range(2):  # Starts 2 and 3: the refused file again, and the gathered objects come back
        memory, again, refused = _start(path)
        assert again == save_path and [p for p, _ in refused] == [path]
        assert sorted(memory.objects) == sorted(gathered.objects) and len(memory) > 0
        save_memory(again, memory, HEADER)  # each run saves what it holds, where it loaded it from
    assert _digest(path) == corrupt  # the refused file was never touched


def test_a_refused_recovered_file_is_kept_too_and_saves_go_to_a_new_name(swept, tmp_path):
    gathered, _, _ = swept
    path = str(tmp_path / "memory.npz")
    _garbage(path)
    _garbage(path + ".recovered.npz")
    kept = {p: _digest(p) for p in (path, path + ".recovered.npz")}
    memory, save_path, refused = _start(path)
    assert len(memory) == 0 and len(refused) == 2 and save_path == path + ".recovered.1.npz"
    save_memory(save_path, gathered, HEADER)
    memory, again, _ = _start(path)
    assert again == save_path and len(memory) == len(gathered)
    assert all(_digest(p) == d for p, d in kept.items())


def test_a_recovered_file_loads_after_the_refused_one_was_moved_away_and_saves_go_home(swept, tmp_path):
    gathered, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path + ".recovered.npz", gathered, HEADER)
    before = _digest(path + ".recovered.npz")
    memory, save_path, refused = _start(path)  # no memory.npz: the user moved the broken one away
    assert not refused and save_path == path and len(memory) == len(gathered)
    assert _digest(path + ".recovered.npz") == before
    assert _start(str(tmp_path / "new.npz"))[1:] == (str(tmp_path / "new.npz"), [])  # nothing there: a new memory


def test_paths_that_cannot_be_a_memory_file_are_named_without_being_opened(tmp_path):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = {str(fifo): "FIFO", "/dev/zero": "under /dev", "/proc/self/status": "under /proc",
             str(tmp_path): "directory", str(a_file / "memory.npz"): "not a directory",
             str(tmp_path / "missing" / "memory.npz"): "does not exist"}
    for path, reason in cases.items():
        problem = persist.path_problem(path)
        assert problem and reason in problem, (path, problem)
        with pytest.raises(MemoryFileError, match=reason):  # loading refuses it too, and never blocks on the FIFO
            load_memory(path, HEADER, ObjectMemory(MemoryConfig()))
    assert persist.path_problem(str(tmp_path / "new.npz")) is None  # absent in a writable directory: fine
    saved = tmp_path / "saved.npz"
    saved.write_bytes(b"")
    assert persist.path_problem(str(saved)) is None


def _bomb(path, source, name="keys", size=1 << 30):
    """``source``'s memory file with the array ``name`` replaced by ``size`` bytes of zeros: about 1 MB packed."""
    import zipfile
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != name + ".npy":
                zout.writestr(info, zin.read(info))
        with zout.open(name + ".npy", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)


def test_a_zip_bomb_is_refused_from_the_zip_directory_before_it_is_unpacked(swept, tmp_path):
    import resource
    memory, _, _ = swept
    normal = str(tmp_path / "memory.npz")
    save_memory(normal, memory, HEADER)
    bomb = str(tmp_path / "bomb.npz")
    _bomb(bomb, normal)
    assert os.path.getsize(bomb) < 8 << 20  # small on disk
    before = _digest(bomb)
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    assert load_memory(normal, HEADER, ObjectMemory(MemoryConfig())) == len(memory)
    peak_normal = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MemoryFileError, match="keys would unpack to .* refused unread"):
        load_memory(bomb, HEADER, ObjectMemory(MemoryConfig()))
    peak_bomb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (peak_bomb - max(peak0, peak_normal)) < 100 * 1024, (peak0, peak_normal, peak_bomb)
    assert _digest(bomb) == before


def test_a_header_claiming_too_many_objects_is_refused(swept, tmp_path):
    memory, _, _ = swept
    path = str(tmp_path / "memory.npz")
    save_memory(path, memory, HEADER)
    small = MemoryConfig(max_objects=1)
    with pytest.raises(MemoryFileError, match="memory_max_objects"):
        load_memory(path, HEADER, ObjectMemory(small))
    import json

    def impossible_voxels(arrays):
        meta = json.loads(arrays["header"].tobytes().decode())
        meta["voxels"] = -3
        arrays["header"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    edited = str(tmp_path / "m2.npz")
    saved_then_edited(memory, edited, impossible_voxels)
    with pytest.raises(MemoryFileError, match="voxel count"):
        load_memory(edited, HEADER, ObjectMemory(MemoryConfig()))


def _edit_header(change):
    import json

    def edit(arrays):
        meta = json.loads(arrays["header"].tobytes().decode())
        change(meta)
        arrays["header"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return edit


def two_mugs_seen_apart():
    """Two objects of one class detected side by side in one frame, then one moved onto the other (so the
    duplicate merge would join them, were they not seen apart)."""
    memory = ObjectMemory(MemoryConfig(min_observations=1, merge_every=1))
    rng = np.random.default_rng(0)
    t = token("red mug")
    a, b = rng.uniform(0, 0.08, (300, 3)), rng.uniform(0, 0.08, (300, 3)) + [0.3, 0, 0]
    memory.integrate(Observation(1, "c", look_at((0.1, -1, 0.5), (0.1, 0, 0)), np.eye(3), None,
                                 [Detection(t, a, "red mug", 0.9), Detection(t, b, "red mug", 0.9)]))
    assert len(memory) == 2
    ids = sorted(memory.objects)
    assert memory.objects[ids[0]].apart == {ids[1]}
    return memory, ids


def test_objects_seen_apart_are_never_merged_and_the_mark_is_saved(tmp_path):
    memory, ids = two_mugs_seen_apart()
    other = memory.objects[ids[1]]
    other.add_points(memory.objects[ids[0]].points, memory.objects[ids[0]].weights, 4000)  # now they overlap
    memory.table.put(other)
    assert memory.merge_duplicates() == 0 and len(memory) == 2
    path = str(tmp_path / "m.npz")
    save_memory(path, memory, HEADER)
    again = ObjectMemory(MemoryConfig(min_observations=1))
    assert load_memory(path, HEADER, again) == 2
    assert again.objects[ids[0]].apart == {ids[1]} and again.merge_duplicates() == 0
    # A file written before the marks existed (no "apart" in its header) loads, without marks.
    saved_then_edited(memory, path, _edit_header(lambda meta: meta.pop("apart")))
    old = ObjectMemory(MemoryConfig(min_observations=1))
    assert load_memory(path, HEADER, old) == 2 and not old.objects[ids[0]].apart
    assert old.merge_duplicates() == 1  # without the mark they are duplicates, as before


@pytest.mark.parametrize("apart", [[[1, 999]], "pairs", [[1]], [[True, 2]], [[1, 2]] * 1000])
def test_a_file_with_impossible_seen_apart_pairs_is_refused_untouched(tmp_path, apart):
    memory, _ = two_mugs_seen_apart()
    path = str(tmp_path / "m.npz")
    before = saved_then_edited(memory, path, _edit_header(lambda meta: meta.__setitem__("apart", apart)))
    with pytest.raises(MemoryFileError, match="seen-apart"):
        load_memory(path, HEADER, ObjectMemory(MemoryConfig()))
    assert open(path, "rb").read() == before
