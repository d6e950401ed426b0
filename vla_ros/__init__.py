"""vla_ros: Vision-Language-Action policies in charge of ROS 2 robots.

The cores (embodiment, control, policy, model, data, sim) never import rclpy; the nodes in
`vla_ros.nodes` are thin wiring between ROS topics and those cores.
"""

__version__ = "0.1.0"
