"""The control core: the PD law, chunk timing and blending, safety limits (no ROS)."""
