"""Gazebo (gz sim) as the robot, driven through ros2_control, plus policy_node and controller_node.

    ros2 launch vla_ros gazebo.launch.py embodiment:=arm7

Needs ros_gz (ros_gz_sim, ros_gz_bridge), gz_ros2_control, controller_manager,
forward_command_controller, joint_state_broadcaster and robot_state_publisher. At launch it runs
`vla-ros embodiment export-ros2-control` for the embodiment into a fresh directory, starts gz sim
with config/gz_world.sdf, spawns the exported URDF, starts the joint_state_broadcaster and one
forward command controller per commanded group (`<group>_controller`, which our controller_node
publishes to), bridges /clock and the cameras, then starts our nodes on sim time. The nodes and
arguments come from vla_ros.bringup, as for the other launch files.
"""
from vla_ros.bringup import gazebo_actions, launch_description


def generate_launch_description():
    return launch_description(sim=False, sim_time=True, extra=gazebo_actions)
