"""`policy_node`: the VLA policy node: observations from camera and joint-state topics in, action chunks out."""
from vla_ros.nodes.common import PendingNode, run


def main(args=None):
    run(lambda: PendingNode("policy_node", issue=6), args)


if __name__ == "__main__":
    main()
