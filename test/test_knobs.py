"""The knob table (knobs.py): every setting is one row, everything else derives from the rows, and a
knob that may change at runtime really reaches the code that uses it."""
import os
import re

import pytest
import torch
import yaml

from ros_harness import ROOT
from textregion_ros import knobs
from textregion_ros.config import PRESETS, PipelineConfig, preset
from textregion_ros.masks import Superpixels
from textregion_ros.pipeline import Pipeline
from textregion_ros.ros.settings import DESCRIPTIONS, RUNTIME_KNOBS, NodeSettings, descriptor, node_settings, read_only
from textregion_ros.tracks.tracker import TrackerConfig

ALL = (PipelineConfig, NodeSettings)


def test_every_field_is_a_row_with_a_description_and_numbers_have_ranges():
    for cls in ALL:
        table = dict((f.name, k) for f, k in knobs.rows(cls))
        assert set(table) == set(cls.__dataclass_fields__), cls
        for name, k in table.items():
            assert len(k.doc) > 10 and k.consumer, name
            default = cls.__dataclass_fields__[name].default
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                assert k.range is not None and k.range[0] <= default <= k.range[1], name


def test_presets_descriptors_and_tracker_rows_derive_from_the_table():
    assert set(PRESETS) == {"paper", "realtime", "cpu-lite"} and PRESETS["paper"] == {}
    for name in PRESETS:
        preset(name)  # every preset's values pass the rows' own checks
    assert PRESETS["cpu-lite"]["device"] == "cpu" and PRESETS["realtime"]["sam2_input_size"] == 512
    d = descriptor("track_min_iou", 0.05)
    assert d.description == dict((f.name, k.doc) for f, k in knobs.rows(TrackerConfig))["min_iou"]
    assert d.floating_point_range[0].to_value == 1.0 and not d.read_only
    assert read_only("encoder_model") and read_only("image_qos") and not read_only("abstain_threshold")
    assert set(RUNTIME_KNOBS) == {f.name for f, k in knobs.rows(PipelineConfig) if k.runtime}
    assert set(DESCRIPTIONS) == {"preset"} | set(PipelineConfig.__dataclass_fields__) | set(
        NodeSettings.__dataclass_fields__)
    with pytest.raises(ValueError, match="image_qos must be sensor_data | reliable"):
        node_settings({"image_qos": "fast"})
    with pytest.raises(ValueError, match="mask_source"):
        preset("paper", mask_source="lasers")


def test_perceive_yaml_names_only_knobs_with_valid_values():
    """Every key in perceive.yaml, set or a commented example, is a row, and its value passes the row."""
    with open(os.path.join(ROOT, "config", "perceive.yaml")) as f:
        text = f.read()
    names = dict((f.name, cls) for cls in ALL for f in knobs.rows(cls) for f in [f[0]])
    seen = 0
    for line in text.splitlines():
        m = re.match(r"^\s*#?\s*([a-z_0-9]+):\s*(\S.*?)?\s*(#.*)?$", line)
        if not m or m.group(1) in ("ros__parameters",) or m.group(2) is None:
            continue
        name, value = m.group(1), yaml.safe_load(m.group(2))
        if name == "preset":
            assert value in PRESETS
            continue
        assert name in names, f"perceive.yaml names {name!r}, which is no knob"
        seen += 1
        if names[name] is PipelineConfig:
            base = preset("cpu-lite") if name != "compile" else preset("realtime")
            base.replace(**{name: tuple(value) if isinstance(value, list) else value})
        else:
            node_settings({name: tuple(value) if isinstance(value, list) else value})
    assert seen >= 50, seen


# --- a runtime knob reaches its consumer: each changes what a frame gives ---------------------------
# knob -> (context overrides for both runs, the changed value, what differs: (before, after) -> bool)
TOKENS_DIFFER = lambda a, b: a.tokens.shape != b.tokens.shape or not torch.allclose(a.tokens, b.tokens)  # noqa: E731
COUNT = lambda stage: (lambda a, b: a.masks.counts[stage] != b.masks.counts[stage])  # noqa: E731
PROBES = {
    "pred_iou_thresh": ({}, 1.0, lambda a, b: a.masks.counts["thresholds"] > 0 == b.masks.counts["thresholds"]),
    "stability_score_thresh": ({}, 1.0, COUNT("thresholds")),
    "stability_score_offset": ({"stability_score_thresh": 0.9, "stability_score_offset": 0.0}, 10.0,
                               COUNT("thresholds")),
    "box_nms_thresh": ({}, 0.5, COUNT("nms")),
    "min_mask_area": ({}, 65536, lambda a, b: a.masks.counts["min_area"] > 0 == b.masks.counts["min_area"]),
    "multimask": ({}, False, lambda a, b: a.masks.counts["candidates"] == 3 * b.masks.counts["candidates"]),
    "fuse_masks": ({"fuse_thresh": 0.0, "fuse_masks": True}, False, COUNT("fused")),
    "fuse_thresh": ({"fuse_masks": True}, 0.0, COUNT("fused")),
    "max_masks": ({}, 1, lambda a, b: len(a) > 1 and len(b) == 1),
    "force_masks": ({}, 30, lambda a, b: len(b) == 30 != len(a)),
    "superpixel_segments": ({}, 8, lambda a, b: len(b) < len(a)),
    "remove_global_patches": ({}, False, TOKENS_DIFFER),
    "global_patch_threshold": ({"global_patch_threshold": -2.0}, 2.0, TOKENS_DIFFER),
    "region_logit_scale": ({}, 1.0, lambda a, b: not torch.allclose(a.classes.prob, b.classes.prob)),
    "abstain_threshold": ({"abstain_threshold": 0.0}, 1.0, lambda a, b: a.groundings[0].found
                          and not b.groundings[0].found),
    "vocabulary": ({}, ("kettle", "spoon"), lambda a, b: b.labels[:2] == ("kettle", "spoon") != a.labels[:2]),
    "background": ({}, ("sky",), lambda a, b: b.labels[-1] == "sky" and b.num_background == 1),
    # Segmentation knobs act on a sequence of frames (frames/schedule.py): two frames, compared as a whole.
    "segmentation": ({}, "target", lambda a, b: [r.kind for r in a] == ["full"] * 2 and
                     [r.kind for r in b] == ["target"] * 2),
    "full_every": ({"segmentation": "hybrid", "abstain_threshold": 0.0, "full_every": 10}, 1,
                     lambda a, b: [r.kind for r in a] == ["full", "target"] and [r.kind for r in b] == ["full"] * 2),
    "target_points": ({"segmentation": "target", "target_points": 3}, 1,
                      lambda a, b: a[0].masks.counts["prompts"] > 1 == b[0].masks.counts["prompts"]),
    "target_negatives": ({"segmentation": "target", "target_negatives": 2}, 0,
                         lambda a, b: not torch.allclose(a[0].masks.masks, b[0].masks.masks)),
}
SEQUENCE_KNOBS = {"segmentation", "full_every", "target_points", "target_negatives"}
BEFORE: dict = {}  # pipeline -> its frame at the fixture's settings: one run serves every probe without context


def frames(pipe, rgb, name):
    """What a probe compares: one frame, or for a segmentation knob two frames from a fresh schedule."""
    if name not in SEQUENCE_KNOBS:
        return pipe.process(rgb, queries=["red mug"])
    from textregion_ros.frames.schedule import FrameScheduler
    schedule, q = FrameScheduler(), pipe.embed_queries(["red mug"])
    return [schedule.step(pipe, rgb, q) for _ in range(2)]


@pytest.fixture(scope="module")
def pipes(clip_encoder):
    torch.manual_seed(0)
    # Random SAM2 heads give many near-equal masks: with NMS and fusion off they all survive, so every
    # later stage has something to change.
    base = dict(random_weights=True, pred_iou_thresh=0.0, stability_score_thresh=0.0, max_masks=24,
                box_nms_thresh=1.0, fuse_masks=False)
    sam = Pipeline(preset("cpu-lite", **base))
    sp = Pipeline(preset("cpu-lite", **{**base, "mask_source": "superpixels"}), encoder=clip_encoder,
                  mask_source=Superpixels(n_segments=64))
    return sam, sp


def test_every_runtime_knob_has_a_probe():
    assert set(PROBES) == set(RUNTIME_KNOBS), set(RUNTIME_KNOBS) ^ set(PROBES)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_runtime_knob_changes_what_a_frame_gives(pipes, scene, name):
    sam, sp = pipes
    pipe = sp if name == "superpixel_segments" else sam
    context, value, differs = PROBES[name]
    start = {k: getattr(pipe.config, k) for k in set(context) | {name}}
    try:
        pipe.update(**context)
        before = BEFORE.get(id(pipe)) if not context and name not in SEQUENCE_KNOBS else None
        if before is None:
            torch.manual_seed(0)
            before = frames(pipe, scene.rgb, name)
            if not context and name not in SEQUENCE_KNOBS:  # the same settings and seed give the same frame
                BEFORE[id(pipe)] = before
        pipe.update(**{name: value})
        torch.manual_seed(0)
        after = frames(pipe, scene.rgb, name)
    finally:
        pipe.update(**start)
    assert differs(before, after), (name, before, after) if name in SEQUENCE_KNOBS else \
        (name, before.masks.counts, after.masks.counts, len(before), len(after))


def test_a_knob_of_a_built_model_is_refused_at_runtime(pipes):
    sam, _ = pipes
    for name in ("encoder_model", "sam2_model", "points_per_side", "templates", "device"):
        with pytest.raises(ValueError, match="restart"):
            sam.update(**{name: getattr(sam.config, name)})


def test_docs_parameter_table_is_the_knob_table():
    from textregion_ros.ros.settings import parameter_table
    with open(os.path.join(ROOT, "docs", "parameters.md")) as f:
        doc = f.read()
    assert parameter_table() in doc, "docs/parameters.md's table: paste ros.settings.parameter_table()"
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    # The README summarises: each knob it names is a row, and it links the full table.
    section = readme.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_0-9]+)`", section))
    rows = {f.name for cls in ALL for f, _ in knobs.rows(cls)} | {"preset"}
    assert len(named) > 10 and named <= rows | {"realtime", "paper", "base_link", "query", "hybrid_every", "propagate_every"}, \
        sorted(named - rows)
    assert "docs/parameters.md" in readme


def test_every_row_of_the_tracker_lock_and_memory_tables_is_a_node_setting():
    """A row added to one of the mirrored tables without its node setting would fail at runtime, where
    params.memory_config (or the tracker's) reads it."""
    import dataclasses

    from textregion_ros.memory.config import MemoryConfig
    from textregion_ros.ros.settings import NodeSettings
    from textregion_ros.tracks.locks import LockConfig
    from textregion_ros.tracks.tracker import TrackerConfig
    names = {f.name for f in dataclasses.fields(NodeSettings)}
    for cls, prefix in ((TrackerConfig, "track_"), (LockConfig, "lock_"), (MemoryConfig, "memory_")):
        missing = [f.name for f in dataclasses.fields(cls) if prefix + f.name not in names]
        assert not missing, f"{cls.__name__} rows without a node setting {prefix}<name>: {missing}"


def test_camera_names_are_ros_name_tokens_unique_and_few():
    assert node_settings({"cameras": ("head", "wrist_2")}).cameras == ("head", "wrist_2")
    for bad, match in (((" head",), "name tokens"), (("head", "head"), "unique"), (("2cam",), "name tokens"),
                       (tuple(f"c{i}" for i in range(9)), "at most 8")):
        with pytest.raises(ValueError, match=match):
            node_settings({"cameras": bad})
