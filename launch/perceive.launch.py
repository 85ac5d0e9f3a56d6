"""ros2 launch textregion_ros perceive.launch.py [image:=/camera/color/image_raw] [rviz:=true] ..."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("textregion_ros")
    args = [
        DeclareLaunchArgument("namespace", default_value="textregion"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "perceive.yaml"])),
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw"),
        DeclareLaunchArgument("depth", default_value="/camera/aligned_depth_to_color/image_raw"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info"),
        DeclareLaunchArgument("compressed", default_value="false"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("rviz", default_value="false"),
    ]
    cfg = LaunchConfiguration
    node = Node(
        package="textregion_ros", executable="textregion_node", name="textregion",
        namespace=cfg("namespace"), output="screen",
        parameters=[cfg("params_file"), {"use_sim_time": cfg("use_sim_time"), "compressed": cfg("compressed")}],
        remappings=[("image", cfg("image")), ("image/compressed", [cfg("image"), "/compressed"]),
                    ("depth", cfg("depth")), ("camera_info", cfg("camera_info"))],
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", PathJoinSubstitution([share, "config", "perceive.rviz"])],
        parameters=[{"use_sim_time": cfg("use_sim_time")}],
        condition=IfCondition(cfg("rviz")),
    )
    return LaunchDescription(args + [node, rviz])
