"""The GIL's cost to a launch-bound pipeline beside a thread running Python, per switch interval.

    python bench/bench_gil.py [--ops 150] [--intervals 5 1 0.2 0.1 0.05] [--seconds 2]

A "frame" is ``--ops`` small torch ops on one thread (64x64 matmul + tanh: each releases the GIL and must win
it back, as a CUDA kernel launch does). Beside it a second thread runs pure Python, as message building does.
For each interval (ms) it prints the frame's median time against the frame alone, and the Python thread's
rate against its rate alone: what the node's SWITCH_INTERVAL_S (ros/run.py) trades.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import torch


def frame(x: torch.Tensor, w: torch.Tensor, ops: int) -> None:
    for _ in range(ops // 2):
        x = torch.tanh(x @ w)


def python_rate(seconds: float, beside=None) -> float:
    """Loops per second of a pure-Python thread, optionally while ``beside()`` runs in this thread."""
    count, stop = [0], threading.Event()

    def work():
        while not stop.is_set():
            s = 0
            for i in range(1000):
                s += i
            count[0] += 1

    th = threading.Thread(target=work)
    th.start()
    time.sleep(0.2)
    c0, t0 = count[0], time.perf_counter()
    out = []
    while time.perf_counter() - t0 < seconds:
        if beside is None:
            time.sleep(0.05)
        else:
            out.append(beside())
    rate = (count[0] - c0) / (time.perf_counter() - t0)
    stop.set()
    th.join()
    return rate, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--intervals", type=float, nargs="+", default=[5.0, 1.0, 0.2, 0.1, 0.05])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g) * 0.1

    def timed():
        t = time.perf_counter()
        frame(x, w, args.ops)
        return time.perf_counter() - t

    timed()
    alone = sorted(timed() for _ in range(20))[10]
    py_alone, _ = python_rate(1.0)
    rows = []
    for ms in args.intervals:
        sys.setswitchinterval(ms * 1e-3)
        rate, times = python_rate(args.seconds, timed)
        med = sorted(times)[len(times) // 2]
        rows.append({"switch_interval_ms": ms, "frame_alone_ms": round(alone * 1e3, 2),
                     "frame_beside_python_ms": round(med * 1e3, 2), "frame_slowdown": round(med / alone, 1),
                     "python_thread_share_of_its_rate_alone": round(rate / py_alone, 3)})
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
