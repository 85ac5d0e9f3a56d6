"""Where a benchmark's JSON report goes: bench/reports/<device tag>-<kind>.json."""
from __future__ import annotations

import json
import os

import torch

REPORTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reports")


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)"


def write_report(report: dict, dev: torch.device, kind: str) -> str:
    """Write ``report`` (which names its device) and return the path."""
    name = device_name(dev)
    tag = "h100" if "H100" in name else ("cuda" if dev.type == "cuda" else f"cpu{os.cpu_count()}core")
    os.makedirs(REPORTS, exist_ok=True)
    path = os.path.join(REPORTS, f"{tag}-{kind}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")
    return path
