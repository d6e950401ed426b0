"""`sim_node`: the embedded MuJoCo simulator node."""
from vla_ros.nodes.common import PendingNode, run


def main(args=None):
    run(lambda: PendingNode("sim_node", issue=4), args)


if __name__ == "__main__":
    main()
