"""Association's pair gate against the rule written out: every detection box against every table row."""
import numpy as np

from textregion_ros.memory import MemoryConfig
from textregion_ros.memory.associate import gated_pairs, touching_pairs
from textregion_ros.memory.objects import MemoryObject, bin_points
from textregion_ros.memory.table import ObjectTable


def test_the_gated_pairs_are_every_touching_box_with_a_passing_cosine():
    rng = np.random.default_rng(0)
    table = ObjectTable()
    dim = 8
    for i in range(300):
        size = 3.0 if i % 50 == 0 else 0.4  # a few wide boxes widen every detection's slice
        p = rng.uniform(0, size, (20, 3)) + rng.uniform(-2, 2, 3)
        token = rng.standard_normal(dim).astype(np.float32)
        table.put(MemoryObject(i + 1, token / np.linalg.norm(token), 0.01, *bin_points(p, np.ones(20), 0.01)))
    for oid in range(5, 300, 7):  # dead rows: empty boxes that touch nothing
        table.remove(oid)
    dlo = rng.uniform(-2, 2, (40, 3))
    dhi = dlo + rng.uniform(0.05, 1.0, (40, 3))
    tokens = rng.standard_normal((40, dim)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    cfg = MemoryConfig(min_cosine=-0.2)
    ti, tj = touching_pairs(table, dlo, dhi)
    pi, pj, cos = gated_pairs(table, cfg, tokens, ti, tj)
    want, touching, every = set(), 0, set()
    for d in range(40):
        for r in range(table.n):
            touch = (dlo[d] <= table.hi[r]).all() and (dhi[d] >= table.lo[r]).all() and table.ids[r] >= 0
            touching += touch
            if touch:
                every.add((d, r))
            if touch and float(tokens[d] @ table.tokens[r]) >= cfg.min_cosine:
                want.add((d, r))
    got = set(zip(pi.tolist(), pj.tolist()))
    assert got == want and len(got) == len(pi)
    assert set(zip(ti.tolist(), tj.tolist())) == every and len(every) == len(ti)  # every touching pair, once
    assert 50 < len(want) < touching  # the scene has pairs, and the cosine gate removed some
    np.testing.assert_allclose(cos, (tokens[pi] * table.tokens[pj]).sum(1), rtol=1e-6)
