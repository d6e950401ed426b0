"""The embedded MuJoCo robot (sim_node) plus policy_node and controller_node.

    ros2 launch vla_ros sim.launch.py embodiment:=arm7

The nodes and their parameters come from vla_ros.bringup, as for `vla-ros up EMBODIMENT --sim`;
every node follows the sim's /clock unless `use_sim_time:=false`, as ROS users expect of a
simulation. `ros2 launch vla_ros sim.launch.py --show-args` lists the arguments.
"""
from vla_ros.bringup import launch_description


def generate_launch_description():
    return launch_description(sim=True, sim_time=True)
