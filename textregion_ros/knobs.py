"""The knob table: every setting is one dataclass field whose metadata says all there is to say of it.

    threshold: float = knob(0.6, "drop masks below this", range=(0.0, 1.0), runtime=True,
                            consumer=MASKS, presets={"cpu-lite": 0.5})

The field gives the name, type and default; the metadata gives the range, the description, the
per-preset values, the allowed choices, whether ROS may change it at runtime, and the component
that consumes it. Validation, the presets, the ROS parameter descriptors, the YAML check and the
README's parameter tables are all derived from these rows (config.py, ros/settings.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

# Consumers: who reads a knob, and so how a change reaches it.
ENCODER = "encoder"  # the image-text model: built once (restart)
MASK_MODEL = "mask model"  # the mask source as built (restart)
MASKS = "mask filter"  # the mask source's per-frame settings, forwarded to it (MaskSource.knobs)
TOKENS = "region tokens"  # read from the config on every frame
TEXT = "text"  # the vocabulary: embedded again when it changes
DECISIONS = "decisions"  # labels, grounding and abstention, read on every frame
SEGMENTATION = "segmentation"  # which frames segment everything and which only the query (frames/patch_maps.py)
EXECUTION = "execution"  # device, precision, compilation (restart)
TRACKS = "tracks"  # the tracker and target locks (the node's publish stage)
INTAKE = "intake"  # the node's camera inputs
STAGES = "stages"  # the node's inference and publish stages
OUTPUTS = "outputs"  # what the node publishes
LIFECYCLE = "lifecycle"
MEMORY = "memory"  # the object memory (the node's memory stage)
REBUILD = (ENCODER, MASK_MODEL, EXECUTION)  # consumers that need the models built again


@dataclass(frozen=True)
class Knob:
    doc: str
    range: Optional[Tuple[float, float]] = None  # closed; NaN and inf are never accepted
    runtime: bool = False  # may change while the node runs (ROS); otherwise read-only there
    consumer: str = ""
    presets: Mapping[str, Any] = field(default_factory=dict)  # preset name -> value (else the default)
    choices: Tuple[str, ...] = ()  # the only values a string knob takes
    constraint: str = ""  # the rule of a string knob whose values are not a fixed list (ros2 param describe)


def knob(default: Any, doc: str, **meta: Any):
    """A dataclass field that is one row of the knob table."""
    return field(default=default, metadata={"knob": Knob(doc, **meta)})


def rows(cls) -> Iterator[Tuple[dataclasses.Field, Knob]]:
    for f in dataclasses.fields(cls):
        k = f.metadata.get("knob")
        if k is not None:
            yield f, k


def ranges(cls) -> Dict[str, Tuple[float, float]]:
    return {f.name: k.range for f, k in rows(cls) if k.range is not None}


def preset_values(cls, name: str) -> Dict[str, Any]:
    return {f.name: k.presets[name] for f, k in rows(cls) if name in k.presets}


def range_problems(obj: Any, table: Dict[str, Tuple[float, float]], what: str = "") -> List[str]:
    """Each named attribute of ``obj`` must be a finite number (not a bool) within its range: one line per one
    that is not."""
    out = []
    for name, (lo, hi) in table.items():
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            out.append(f"{what}{name} must be a finite number in [{lo}, {hi}], got {v!r}")
    return out


def check_ranges(obj: Any, table: Dict[str, Tuple[float, float]], what: str = "") -> None:
    found = range_problems(obj, table, what)
    if found:
        raise ValueError("; ".join(found))


def problems(obj: Any, what: str = "") -> List[str]:
    """Every row of ``obj``'s class outside its range or choices, one line each (None means "the default")."""
    table = {n: r for n, r in ranges(type(obj)).items() if getattr(obj, n) is not None}
    found = range_problems(obj, table, what)
    for f, k in rows(type(obj)):
        v = getattr(obj, f.name)
        if k.choices and v not in k.choices:
            found.append(f"{what}{f.name} must be {' | '.join(k.choices)}, not {v!r}")
    return found


def check(obj: Any, what: str = "") -> None:
    """Ranges and choices of every row; all the bad ones in one message, so a user fixes them in one go."""
    found = problems(obj, what)
    if found:
        raise ValueError("; ".join(found))
