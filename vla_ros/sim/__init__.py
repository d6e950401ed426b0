"""The embedded MuJoCo simulator: any embodiment in a tabletop scene, tasks and scripted experts (no ROS)."""
