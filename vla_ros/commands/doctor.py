"""`vla-ros doctor`: check the environment."""
import argparse


def register(verbs) -> None:
    parser = verbs.add_parser("doctor", help="check the environment (ROS 2, DDS, torch, MuJoCo, install layout)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vla_ros import doctor

    return doctor.report(doctor.run_checks())
