"""Thin rclpy nodes: each declares parameters, wires topics to a ROS-free core, and reports."""
