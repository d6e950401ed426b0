"""Conversions between ROS 2 messages and the numpy/plain-Python types the cores use."""
