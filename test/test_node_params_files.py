"""What users write into parameters, over DDS: files with empty lists, the node's own dump fed back, a
misspelled key, several bad values, `ros2 param set ... "[]"`, and the choices `ros2 param describe` shows.

`ros2 param dump` / `load` are ros2cli, which is not on PyPI: the dump here is written as `ros2 param dump`
writes it, from the node's own list_parameters and get_parameters services, and read back with rclpy's
parameter_dict_from_yaml_file, which `ros2 param load` uses.
"""
import time

import numpy as np

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter, parameter_value_to_python

from ros_harness import TEST_OVERRIDES, YAML, running_harness
from textregion_ros.ros.node import TextRegionNode
from textregion_ros.ros.param_callbacks import ARRAY_PARAMS


@pytest.fixture(scope="module")
def h():
    with running_harness("/pf") as harness:
        yield harness


def call(h, srv_type, name, request, timeout=30.0):
    client = h.tester.create_client(srv_type, name)
    try:
        assert client.wait_for_service(10), name
        future = client.call_async(request)
        assert h.wait(future.done, timeout), name
        return future.result()
    finally:
        h.tester.destroy_client(client)


def dump(h, node_fqn: str) -> dict:
    """The node's parameters as `ros2 param dump` writes them: {node: {ros__parameters: {name: value}}}."""
    names = sorted(call(h, ListParameters, f"{node_fqn}/list_parameters", ListParameters.Request()).result.names)
    values = call(h, GetParameters, f"{node_fqn}/get_parameters", GetParameters.Request(names=names)).values
    return {node_fqn: {"ros__parameters": {n: parameter_value_to_python(v) for n, v in zip(names, values)}}}


def types(h, node_fqn: str, names) -> dict:
    values = call(h, GetParameters, f"{node_fqn}/get_parameters", GetParameters.Request(names=list(names))).values
    return {n: v.type for n, v in zip(names, values)}


def start(h, namespace: str, *files):
    """A second node on the harness's models, from the perceive.yaml and ``files``, spun with the harness."""
    args = ["--ros-args", "--params-file", YAML] + [x for f in files for x in ("--params-file", str(f))]
    node = TextRegionNode(pipeline=h.node.pipeline, namespace=namespace, cli_args=args,
                          parameter_overrides=list(TEST_OVERRIDES))
    h.executor.add_node(node)
    return node


def stop(h, node):
    h.executor.remove_node(node)
    node.destroy_node()


def test_a_file_with_every_list_empty_configures_and_the_lists_keep_their_type(h, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {name: [] for name in ARRAY_PARAMS}}}))
    node = start(h, "/pf_empty", path)
    try:
        assert node.params.error is None, node.params.error
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.last_failure
        got = types(h, "/pf_empty/textregion", ARRAY_PARAMS)
        assert all(t == ParameterType.PARAMETER_STRING_ARRAY for t in got.values()), got
        described = call(h, DescribeParameters, "/pf_empty/textregion/describe_parameters",
                         DescribeParameters.Request(names=list(ARRAY_PARAMS))).descriptors
        assert all(d.type == ParameterType.PARAMETER_STRING_ARRAY for d in described), [(d.name, d.type) for d in described]
        # No labels at all: every region is "background", and queries still ground (the pipeline's rule).
        vocab = node.pipeline.prepare_vocabulary([], [])
        assert vocab.labels == ("background",) and vocab.num_background == 1
    finally:
        stop(h, node)


def test_the_nodes_own_dump_fed_back_configures_and_loads(h, tmp_path):
    fqn = h.node.get_fully_qualified_name()
    dumped = dump(h, fqn)
    assert dumped[fqn]["ros__parameters"]["cameras"] == []  # as `ros2 param dump` writes it
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump(dumped))
    # `ros2 param load <node> dump.yaml` reads the file with rclpy's parser, for this node's name.
    loaded = rclpy.parameter.parameter_dict_from_yaml_file(str(path), True, [fqn])
    assert "cameras" in loaded and "vocabulary" in loaded
    # Fed back at start (the dump's node name is the running one's: a wildcard copy starts a second node).
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({"/**": dumped[fqn]}))
    node = start(h, "/pf_dump", again)
    try:
        assert node.params.error is None, node.params.error
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.last_failure
        ours = dump(h, "/pf_dump/textregion")["/pf_dump/textregion"]["ros__parameters"]
        same = {k for k, v in dumped[fqn]["ros__parameters"].items() if ours.get(k) == v}
        assert set(dumped[fqn]["ros__parameters"]) - same <= {"start_type_description_service"}, \
            sorted(set(dumped[fqn]["ros__parameters"]) - same)
        # And loaded at runtime, as `ros2 param load` sends it: every runtime knob is accepted as it is.
        runtime = [m for name, m in loaded.items() if not node.describe_parameter(name).read_only]
        results = call(h, SetParameters, "/pf_dump/textregion/set_parameters",
                       SetParameters.Request(parameters=runtime)).results
        assert all(r.successful for r in results), [r.reason for r in results if not r.successful]
    finally:
        stop(h, node)


def test_param_set_of_an_empty_list_keeps_a_list_of_strings(h):
    fqn = h.node.get_fully_qualified_name()
    empty = Parameter("queries", Parameter.Type.BOOL_ARRAY, []).to_parameter_msg()  # `ros2 param set ... "[]"`
    result = call(h, SetParameters, f"{fqn}/set_parameters", SetParameters.Request(parameters=[empty])).results[0]
    assert result.successful, result.reason
    assert types(h, fqn, ["queries"])["queries"] == ParameterType.PARAMETER_STRING_ARRAY
    assert h.node.settings.queries == ()


def test_a_misspelled_key_and_two_bad_values_are_all_named(h, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "sam2_input_sise": 512, "fuse_thresh": 7.0, "box_nms_thresh": -1.0}}}))
    before = h.node.stats.snapshot().get("bad_input/parameter", 0)
    node = start(h, "/pf_typo", path)
    try:
        assert node.stats.snapshot().get("bad_input/parameter", 0) == 1  # the unknown key, counted and logged
        error = node.params.error
        assert "fuse_thresh" in error and "box_nms_thresh" in error, error  # both bad values, one message
        assert error.count("fuse_thresh") == 1 and error.count("box_nms_thresh") == 1, error
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert "fuse_thresh" in node.last_failure and "box_nms_thresh" in node.last_failure
    finally:
        stop(h, node)
    assert h.node.stats.snapshot().get("bad_input/parameter", 0) == before


def test_the_misspelled_key_line_names_the_closest_knob(h):
    lines = []

    class Logger:
        def warning(self, text, **_):
            lines.append(text)

    from textregion_ros.ros.param_callbacks import Parameters
    p = Parameters.__new__(Parameters)
    p.values = {"sam2_input_size": 512, "pred_iou_thresh": 0.6}
    p.node = type("N", (), {"stats": h.node.stats, "get_logger": lambda self: Logger()})()
    p._warn_unknown({"sam2_input_sise": None, "use_sim_time": None, "qos_overrides./x.depth": None})
    assert lines == ["parameter 'sam2_input_sise' is not a parameter of this node and is ignored; "
                     "did you mean 'sam2_input_size'?"]


def test_enum_choices_are_the_descriptors_constraint(h):
    fqn = h.node.get_fully_qualified_name()
    names = ["segmentation", "device", "mask_source", "preset", "target_tracking"]
    described = call(h, DescribeParameters, f"{fqn}/describe_parameters",
                     DescribeParameters.Request(names=names)).descriptors
    got = {d.name: d.additional_constraints for d in described}
    assert got["segmentation"] == "one of: everything, target, hybrid", got
    assert "superpixels" in got["mask_source"] and "cpu-lite" in got["preset"] and "sam2" in got["target_tracking"]
    assert got["device"], got  # its choices or its rule, never empty


def test_a_single_camera_node_names_its_one_unnamed_camera(h):
    from textregion_ros.srv import Ground
    reply = call(h, Ground, "ground", Ground.Request(query="red mug", camera="wrist"), timeout=60)
    assert not reply.success and "one unnamed camera" in reply.message and "['']" not in reply.message


def test_no_depth_warning_before_depth_first_matched_then_one_after():
    """At start-up the depth reader may be matched by DDS after the image's, so the first images find only
    later depth frames: counted, not warned. Once depth has matched, a missing match is warned."""
    from sensor_msgs.msg import Image as ImageMsg

    from textregion_ros.ros.context import NodeContext
    from textregion_ros.ros.diagnostics import Stats
    from textregion_ros.ros.intake import Intake
    from textregion_ros.ros.settings import NodeSettings

    said = []

    class Logger:
        def warning(self, text, **_):
            said.append(text)

    ctx = NodeContext(Logger(), Stats(), lambda: 0, NodeSettings(sync_tolerance=0.01))
    intake = Intake(ctx)
    intake.K, intake.K_size = np.eye(3), (0, 0)

    def msg(t_s):
        m = ImageMsg(height=2, width=2, encoding="32FC1", step=8, data=bytes(16))
        m.header.stamp.sec, m.header.stamp.nanosec = int(t_s), int(round((t_s % 1) * 1e9))
        return m

    intake.on_depth(msg(10.5))  # the first depth to arrive is of a later image
    assert intake.match_depth(msg(10.0)) == (None, None)
    assert not said and ctx.stats.snapshot()["depth/unmatched_before_first_match"] == 1
    intake.on_depth(msg(11.0))
    assert intake.match_depth(msg(11.0))[0] is not None  # depth flows
    assert intake.match_depth(msg(12.0)) == (None, None)  # now a missing match is worth a line
    assert len(said) == 1 and "sync_tolerance" in said[0]
    intake.reset()  # a deactivate starts the rule again
    intake.on_depth(msg(20.5))
    assert intake.match_depth(msg(20.0)) == (None, None) and len(said) == 1


@pytest.mark.parametrize("where,reason", [("fifo", "FIFO"), ("/dev/zero", "under /dev"), ("dir", "directory"),
                                          ("under_a_file", "not a directory")])
def test_a_memory_file_that_cannot_be_one_fails_configure_at_once_with_the_reason(h, tmp_path, where, reason):
    import os
    paths = {"fifo": tmp_path / "m.npz", "/dev/zero": "/dev/zero", "dir": tmp_path,
             "under_a_file": tmp_path / "f" / "m.npz"}
    os.mkfifo(paths["fifo"]) if where == "fifo" else None
    (tmp_path / "f").write_text("a file") if where == "under_a_file" else None
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"memory": True, "memory_file": str(paths[where])}}}))
    node = start(h, f"/pf_mem_{where.strip('/').replace('/', '_')}", path)
    try:
        t0 = time.monotonic()
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert time.monotonic() - t0 < 10  # at once: the FIFO is never opened
        assert reason in node.last_failure and "memory_file" in node.last_failure, node.last_failure
        assert node.stats.snapshot().get("bad_input/memory_file") == 1
    finally:
        stop(h, node)
    assert not os.path.exists("/dev/zero.recovered.npz")


def test_every_refused_set_is_counted_range_type_and_read_only_included(h):
    """rclpy refuses out-of-range and wrongly typed values and read-only knobs before our validator sees them:
    each is still counted (bad_input/parameter) and logged, once."""
    fqn = h.node.get_fully_qualified_name()
    bad = [Parameter("full_every", value=0), Parameter("full_every", value=-1), Parameter("full_every", value=2**62),
           Parameter("target_points", value=0), Parameter("target_points", value=17),
           Parameter("target_points", value="three"), Parameter("abstain_threshold", value=float("nan")),
           Parameter("sam2_model", value="tiny")]  # read-only while the node runs
    for p in bad:
        before = h.node.stats.snapshot().get("bad_input/parameter", 0)
        result = call(h, SetParameters, f"{fqn}/set_parameters",
                      SetParameters.Request(parameters=[p.to_parameter_msg()])).results[0]
        assert not result.successful, p.name
        assert h.node.stats.snapshot().get("bad_input/parameter", 0) == before + 1, (p.name, p.value)
    good = Parameter("target_points", value=4).to_parameter_msg()
    before = h.node.stats.snapshot().get("bad_input/parameter", 0)
    assert call(h, SetParameters, f"{fqn}/set_parameters", SetParameters.Request(parameters=[good])).results[0].successful
    assert h.node.stats.snapshot().get("bad_input/parameter", 0) == before


def test_bad_input_is_counted_every_time_and_logged_once_per_reason_and_period():
    """A flood of refused messages pays a count each, and one line per reason every LOG_EVERY_S (rclpy's own
    throttle costs about 0.4 ms a call, which a 60 Hz flood would pay on every message)."""
    import dataclasses

    from textregion_ros.ros import context
    from textregion_ros.ros.diagnostics import Stats
    from textregion_ros.ros.settings import NodeSettings

    lines = []

    class Logger:
        def warning(self, text, **_):
            lines.append(text)

    ctx = context.NodeContext(Logger(), Stats(), lambda: 0, NodeSettings())
    other = dataclasses.replace(ctx, stats=Stats())  # a named camera's context: its own lines
    for _ in range(500):
        ctx.bad_input("bad_step", "step x height is not the payload")
        ctx.bad_input("unsupported_encoding", "'32FC1' is not a color encoding")
    other.bad_input("bad_step", "on the other camera")
    assert ctx.stats.snapshot()["bad_input/bad_step"] == 500
    assert len(lines) == 3 and "on the other camera" in lines[-1]
    ctx._logged["bad_input/bad_step"] -= context.LOG_EVERY_S  # the period has passed
    ctx.bad_input("bad_step", "again")
    assert len(lines) == 4 and lines[-1].endswith("again")
