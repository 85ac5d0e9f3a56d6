"""Duplicate merging's candidate pairs (memory/table.touching_pairs) in maps with a few large objects.

SAM2 joined into one object (a tabletop seen whole) gives one box far larger than the rest. The candidates
must still be exactly the pairs whose boxes overlap, checked here against every pair compared directly, and a
map with such an object must merge what it merged before and nothing more.
"""
import itertools

import numpy as np
import pytest

from textregion_ros.memory import Detection, MemoryConfig, ObjectMemory, Observation
from textregion_ros.memory.table import touching_pairs


def every_pair(lo, hi, rows):
    """The reference: each pair of rows compared on its own."""
    return {(int(a), int(b)) for a, b in itertools.combinations(rows, 2)
            if np.all(lo[a] <= hi[b]) and np.all(lo[b] <= hi[a])}


@pytest.mark.parametrize("seed", range(6))
def test_the_candidates_are_every_overlapping_pair_and_no_other(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300)) if seed < 4 else 200
    lo = rng.uniform(0, 10, (n, 3))
    size = rng.uniform(0.02, 0.3, (n, 3))
    # A few boxes metres across, as a joined table; in the last seeds a third of them (one reach for all then).
    big = rng.choice(n, max(1, n // 3 if seed >= 4 else n // 25), replace=False)
    size[big] = rng.uniform(1.0, 6.0, (len(big), 3))
    if seed % 2:
        size[rng.choice(n, n // 3)] = 0.1  # many of one size: the 90th percentile equals them
    hi = lo + size
    rows = np.sort(rng.choice(n, int(rng.integers(2, n + 1)), replace=False))  # dead rows left out
    got = touching_pairs(lo, hi, rows)
    assert got.dtype.kind == "i" and (got[:, 0] < got[:, 1]).all()
    assert [tuple(p) for p in got.tolist()] == sorted(every_pair(lo, hi, rows))


def test_one_and_no_rows_give_no_pair():
    lo, hi = np.zeros((3, 3)), np.ones((3, 3))
    assert touching_pairs(lo, hi, np.array([1])).shape == (0, 2)
    assert touching_pairs(lo, hi, np.array([], np.int64)).shape == (0, 2)


def unit(v):
    return v / np.linalg.norm(v)


def test_a_map_with_one_large_object_still_merges_its_duplicates_and_only_those():
    rng = np.random.default_rng(3)
    memory = ObjectMemory(MemoryConfig(merge_every=0))
    seen = Observation(1, "c", None, None, None)
    tokens = [unit(rng.standard_normal(64)) for _ in range(40)]
    cube = rng.uniform(0, 0.1, (400, 3))
    for k in range(40):  # a row of small objects 0.5 m apart, none a duplicate of another
        memory._new(Detection(tokens[k], cube + [0.5 * k, 0, 0], f"o{k}", 0.9), seen)
    # A table seen whole, under every one of them, with a token like none of theirs.
    table = np.c_[rng.uniform(-0.5, 20.5, 3000), rng.uniform(-0.5, 0.5, 3000), rng.uniform(-0.1, 0.0, 3000)]
    big = memory._new(Detection(unit(rng.standard_normal(64)), table, "table", 0.9), seen)
    # Two duplicates, one inside the other and under the table's box: they merge, as before.
    a = memory._new(Detection(tokens[7], cube[:300] + [0.5 * 7, 0, 0], "o7", 0.9), seen)
    count = len(memory)
    assert memory.merge_duplicates() == 1 and len(memory) == count - 1
    assert big.id in memory.objects and a.id not in memory.objects
    assert memory.merge_duplicates() == 0
