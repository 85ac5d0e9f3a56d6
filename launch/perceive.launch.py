"""ros2 launch textregion_ros perceive.launch.py [image:=/camera/color/image_raw] [rviz:=true] ...

The node's parameters live in the params file (config/perceive.yaml). Launch arguments left unset
do not override it. If the node exits with an error (missing weights, bad parameters), the whole
launch shuts down and ``ros2 launch`` exits non-zero; closing RViz ends the launch too. With memory:=true
the object memory runs in its own node and process, textregion_memory (find, memory/save, memory/clear and
memory/* are its), restarted after a crash; Ctrl-C stops every node.
"""
import shutil

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler,
                            Shutdown)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown as ShutdownEvent
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from textregion_ros.ros.launch_args import ARGS, BOOL_ARGS, NAMES, unknown_arguments


class NodeFailed(RuntimeError):
    pass


def _fail_on_error(event, context):
    """A non-zero exit of the node is an error of the launch: raising makes `ros2 launch` exit 1."""
    if event.returncode not in (0, None, -2, -15):  # -2 / -15: stopped by Ctrl-C or by the launch itself
        raise NodeFailed(f"textregion node exited with code {event.returncode}; see its log above")
    return [EmitEvent(event=ShutdownEvent(reason="textregion node exited"))]


def _memory_exit(event, context):
    """The memory node restarts after a crash (respawn; perception goes on meanwhile, and the restart reloads
    memory_file), but one that cannot start (exit 2: missing weights, bad parameters) fails the launch."""
    if event.returncode == 2:
        raise NodeFailed("textregion_memory cannot start; see its log above")
    return None


def _memory_node(cfg, params, overrides):
    """With memory on (memory:=true, or the params file's memory: true): the object memory in its own node
    and process, fed by the perception node's observation topic; the perception node then keeps no memory."""
    memory = overrides.get("memory", _params_file_value(params[0], "memory", bool))
    if not memory:
        return []
    overrides["memory"] = False  # for the perception node: the memory node remembers
    node = Node(package="textregion_ros", executable="textregion_memory", name="textregion_memory",
                namespace=cfg("namespace"), output="screen", parameters=list(params), respawn=True,
                respawn_delay=2.0)
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_memory_exit))]


def _params_file_value(path, name, kind):
    """The value of ``name`` the params file sets for any node, when it is a ``kind``; else None."""
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return None
    for section in doc.values():
        value = (section or {}).get("ros__parameters", {}).get(name) if isinstance(section, dict) else None
        if isinstance(value, kind):
            return value
    return None


def _remappings(cfg, cameras):
    """One camera: image, depth and camera_info to the launch arguments. Several: each camera's inputs to a
    RealSense-style driver's topics under /<camera>/ (remap others with --ros-args -r)."""
    if not cameras:
        image = cfg("image")
        return [("image", image), ("image/compressed", image + "/compressed"), ("depth", cfg("depth")),
                ("camera_info", cfg("camera_info"))]
    out = []
    for c in cameras:
        out += [(f"{c}/image", f"/{c}/color/image_raw"), (f"{c}/image/compressed", f"/{c}/color/image_raw/compressed"),
                (f"{c}/depth", f"/{c}/aligned_depth_to_color/image_raw"), (f"{c}/camera_info", f"/{c}/color/camera_info")]
    return out


def _setup(context):
    cfg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    share = FindPackageShare("textregion_ros").perform(context)
    params = [cfg("params_file") or f"{share}/config/perceive.yaml"]
    warnings = [LogInfo(msg="WARNING: " + line) for line in unknown_arguments(context.launch_configurations, NAMES)]
    overrides = {name: cfg(name).lower() == "true" for name in BOOL_ARGS if cfg(name)}
    overrides.update({name: cfg(name) for name in ("preset", "device") if cfg(name)})
    cameras = [c.strip() for c in cfg("cameras").split(",") if c.strip()]
    if cameras:
        overrides["cameras"] = cameras
    memory = _memory_node(cfg, params + ([dict(overrides, memory=True)] if overrides else []), overrides)
    if overrides:
        params.append(overrides)
    node = Node(package="textregion_ros", executable="textregion_node", name="textregion",
                namespace=cfg("namespace"), output="screen", parameters=params, remappings=_remappings(cfg, cameras))
    actions = warnings + [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_fail_on_error))] + memory
    if cfg("rviz").lower() == "true":
        if shutil.which("rviz2") is None:
            try:
                FindPackageShare("rviz2").perform(context)
                found = True
            except Exception:
                found = False
            if not found:
                actions.append(LogInfo(msg="rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2); "
                                           "the node runs without it"))
                return actions
        from textregion_ros.ros.rviz_config import write_rendered

        rviz_cfg = write_rendered(f"{share}/config/perceive.rviz", cfg("namespace"), cfg("fixed_frame"),
                                  cameras=cameras or [str(c) for c in _params_file_value(params[0], "cameras", list)
                                                       or ()])
        sim_time = overrides.get("use_sim_time", _params_file_value(params[0], "use_sim_time", bool))
        sim = {"use_sim_time": sim_time} if sim_time is not None else {}
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", rviz_cfg], parameters=[sim] if sim else [], on_exit=Shutdown()))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default if default is not None else "",
                                      description=description) for name, default, description in ARGS]
    return LaunchDescription(declared + [OpaqueFunction(function=_setup)])
