"""`recorder_node`: the episode recorder node (rosbag2, MCAP) for the data flywheel."""
from vla_ros.nodes.common import PendingNode, run


def main(args=None):
    run(lambda: PendingNode("recorder_node", issue=7), args)


if __name__ == "__main__":
    main()
