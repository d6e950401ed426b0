"""policy_node + controller_node for a robot that is already up.

Its drivers publish joint_states and the cameras, and take <group>_controller/commands.

    ros2 launch vla_ros bringup.launch.py embodiment:=arm7 policy:=builtin

The nodes and their parameters come from vla_ros.bringup, as for `vla-ros up EMBODIMENT`;
`ros2 launch vla_ros bringup.launch.py --show-args` lists the arguments.
"""
from vla_ros.bringup import launch_description


def generate_launch_description():
    return launch_description(sim=False)
