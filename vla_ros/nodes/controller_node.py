"""`controller_node`: the real-time PD controller node that tracks action chunks."""
from vla_ros.nodes.common import PendingNode, run


def main(args=None):
    run(lambda: PendingNode("controller_node", issue=5), args)


if __name__ == "__main__":
    main()
