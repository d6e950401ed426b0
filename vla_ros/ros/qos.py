"""The QoS profiles of vla_ros topics, each defined once.

- LATCHED: transient local, depth 1: a late subscriber still gets the last message (vla/instruction,
  as a user or the sim sets a task once and a node that starts later must know it).
- SENSOR_DATA: best effort, newest few (cameras: a late frame is worth less than the next one).
- RELIABLE: the default for commands, states and chunks (depth 10).
"""
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SENSOR_DATA = qos_profile_sensor_data
RELIABLE = 10
