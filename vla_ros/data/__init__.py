"""Episodes: recorded as rosbag2 bags, read back as arrays, turned into training samples (no ROS)."""
