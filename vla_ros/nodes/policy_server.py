"""`policy_server`: serves a policy backend over the openpi websocket protocol (`vla-ros serve`).

Not an rclpy node: a websocket server. `ros2 run vla_ros policy_server --backend hold --port 8000`
takes `vla-ros serve`'s options; ROS arguments a launch file appends are ignored.
"""
import sys

from vla_ros import cli


def main(args=None):
    argv = list(sys.argv[1:] if args is None else args)
    if "--ros-args" in argv:
        argv = argv[:argv.index("--ros-args")]
    sys.exit(cli.main(["serve", *argv]))


if __name__ == "__main__":
    main()
