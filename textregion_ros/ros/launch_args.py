"""perceive.launch.py's arguments, and the check that names a misspelled one (no launch imports, so tests
run without a ROS install's launch packages)."""
from __future__ import annotations

import difflib
from typing import Iterable, List

ARGS = [
    ("namespace", "textregion", "namespace of the node and its topics"),
    ("params_file", None, "YAML with the node's parameters (default: the package's config/perceive.yaml); "
                          "every knob without a launch argument is set there"),
    ("image", "/camera/color/image_raw", "camera image topic (sensor_msgs/Image)"),
    ("depth", "/camera/aligned_depth_to_color/image_raw", "depth registered to the image (16UC1 mm or 32FC1 m)"),
    ("camera_info", "/camera/color/camera_info", "camera_info of the image (K is used)"),
    ("cameras", "", "several cameras on one set of models, comma-separated (head,wrist): each <cam>/image, "
                    "<cam>/depth and <cam>/camera_info is remapped to /<cam>/color/image_raw, "
                    "/<cam>/aligned_depth_to_color/image_raw and /<cam>/color/camera_info; empty: one camera "
                    "(image, depth, camera_info below) or the params file's cameras"),
    ("compressed", "", "true: subscribe to <image>/compressed; empty: keep the params file's value"),
    ("use_sim_time", "", "true for bag replay with /clock (RViz too); empty: keep the params file's value"),
    ("preset", "", "realtime | cpu-lite | paper; empty: keep the params file's value"),
    ("device", "", "auto | cpu | cuda | cuda:N; empty: keep the params file's value"),
    ("random_weights", "", "true: random weights for trying the node without weights (meaningless labels)"),
    ("memory", "", "true: the object memory (memory_frame and memory_file in the params file); empty: keep the "
                   "params file's value"),
    ("autostart", "", "false: stay unconfigured until `ros2 lifecycle set`; empty: keep the params file's value"),
    ("rviz", "false", "start RViz with the overlay, markers and grounded point (each camera's, with several)"),
    ("fixed_frame", "camera_color_optical_frame", "RViz fixed frame: the camera's optical frame id"),
]
# Node parameters, set only when given.
BOOL_ARGS = ("compressed", "use_sim_time", "random_weights", "memory", "autostart")
NAMES = tuple(name for name, _, _ in ARGS)


def unknown_arguments(given: Iterable[str], known: Iterable[str] = NAMES) -> List[str]:
    """One line per given argument that is not one of ours (``ros2 launch`` would ignore it silently), naming
    the closest argument, and where every other knob goes."""
    known = sorted(known)
    lines = []
    for name in sorted(set(given) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        lines.append(f"unknown launch argument {name!r} is ignored: {hint}Other knobs go in a params file "
                     f"(params_file:=my.yaml; see config/perceive.yaml)")
    return lines
