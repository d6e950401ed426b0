"""`vla-ros embodiment init|check`: draft an embodiment from a URDF, xacro file or topic; validate one, show it."""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_TOPIC = "/robot_description"  # where robot_state_publisher publishes the URDF


def register(verbs) -> None:
    parser = verbs.add_parser("embodiment", help="draft (init) or validate (check) an embodiment file")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="write an embodiment file drafted from a URDF, xacro file or "
                                           "/robot_description, then check it")
    init.add_argument("urdf", type=Path, nargs="?", help="the robot's .urdf, or a .urdf.xacro/.xacro file to expand")
    init.add_argument("--xacro-arg", action="append", default=[], metavar="NAME:=VALUE",
                      help="a xacro argument (repeatable); kept in the file as xacro_args")
    init.add_argument("--from-topic", nargs="?", const=DEFAULT_TOPIC, metavar="TOPIC",
                      help=f"read the URDF a running robot publishes (default {DEFAULT_TOPIC}, transient local) and "
                           "save it as a .urdf beside the embodiment file")
    init.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for --from-topic (default 10)")
    init.add_argument("-o", "--output", type=Path, help="where to write it (default: config/<robot name>.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=run_init)
    check = actions.add_parser("check", help="validate an embodiment file and print its groups, limits and layout")
    check.add_argument("config", help="an embodiment file, or the name of a shipped one (arm7, ...)")
    check.set_defaults(handler=run_check)
    export = actions.add_parser("export-ros2-control",
                                help="write the URDF with <ros2_control> tags (plain and for Gazebo), the controllers "
                                     "YAML and the ros_gz_bridge YAML, so controller_node drives ros2_control hardware")
    export.add_argument("config", help="an embodiment file, or the name of a shipped one (arm7, ...)")
    export.add_argument("--out", type=Path, required=True, help="directory to write the four files into")
    export.set_defaults(handler=run_export)


def run_init(args: argparse.Namespace) -> int:
    from vla_ros.embodiment.config import EmbodimentError
    from vla_ros.embodiment.draft import draft_embodiment
    from vla_ros.embodiment.source import is_xacro

    if (args.urdf is None) == (args.from_topic is None):
        raise EmbodimentError("(source)", "give either a URDF/xacro file or --from-topic",
                              "pass robot.urdf, robot.urdf.xacro, or --from-topic [/robot_description]")
    xacro_args = dict(_xacro_arg(text) for text in args.xacro_arg)
    if xacro_args and (args.urdf is None or not is_xacro(args.urdf)):
        raise EmbodimentError("--xacro-arg", "applies to a xacro file only", "pass a .xacro file, or drop --xacro-arg")
    if args.from_topic is not None:
        from vla_ros.ros.robot_description import read_robot_description

        xml = read_robot_description(args.from_topic, args.timeout)
        output = args.output or Path("config") / f"{_robot_name(xml)}.yaml"
        urdf = output.with_suffix(".urdf")
        _refuse_overwrite([output, urdf], args.force)
        urdf.parent.mkdir(parents=True, exist_ok=True)
        urdf.write_text(xml)
        print(f"wrote {urdf}: the URDF published on {args.from_topic}")
    else:
        urdf = args.urdf
        output = args.output or Path("config") / f"{urdf.name.split('.')[0]}.yaml"
        _refuse_overwrite([output], args.force)
    text = draft_embodiment(urdf, output, xacro_args, args.from_topic)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}: review the lines marked CHECK")
    return run_check(argparse.Namespace(config=str(output)))


def _xacro_arg(text: str) -> tuple[str, str]:
    from vla_ros.embodiment.config import EmbodimentError

    name, separator, value = text.partition(":=")
    if not separator or not name:
        raise EmbodimentError("--xacro-arg", f"{text!r} is not NAME:=VALUE", "write e.g. --xacro-arg prefix:=left_")
    return name, value


def _robot_name(xml: str) -> str:
    """The name of the <robot> in a URDF's text ("robot" when it has none or is not XML)."""
    from xml.etree import ElementTree

    try:
        return ElementTree.fromstring(xml).get("name") or "robot"
    except ElementTree.ParseError:
        return "robot"


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    from vla_ros.embodiment.config import EmbodimentError

    for path in paths:
        if path.exists() and not force:
            raise EmbodimentError("(output)", f"{path} exists", "pass --force to overwrite it, or -o another path")


def run_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from vla_ros.embodiment import load_embodiment
    from vla_ros.terminal import console as make_console

    embodiment = load_embodiment(args.config)
    console = make_console()
    table = Table(title=f"embodiment {embodiment.name} ({embodiment.path})")
    for column in ("group", "kind", "joint / channel", "mode", "position [rad|m]", "velocity", "effort",
                   "kp", "kd", "slot"):
        table.add_column(column, justify="right" if column in ("velocity", "effort", "kp", "kd", "slot") else "left")
    for group in embodiment.groups.values():
        slots = embodiment.layout.slot(group.name).start if group.name in embodiment.config.action.groups else None
        mode = "delegated" if group.delegated else group.mode
        for i, joint in enumerate(group.joints):
            position = "continuous" if group.continuous[i] else f"[{group.lower[i]:.3g}, {group.upper[i]:.3g}]"
            table.add_row(
                group.name if i == 0 else "", group.kind if i == 0 else "", joint, mode if i == 0 else "",
                position, f"{group.velocity_limit[i]:.3g}", f"{group.effort_limit[i]:.3g}",
                "" if group.delegated else f"{group.kp[i]:.4g}", "" if group.delegated else f"{group.kd[i]:.4g}",
                "" if slots is None else str(slots + i),
            )
        table.add_section()
    if embodiment.base is not None:
        base = embodiment.base
        start = embodiment.layout.slot(base.name).start if base.name in embodiment.config.action.groups else None
        for i, channel in enumerate(base.channels):
            table.add_row(base.name if i == 0 else "", "base" if i == 0 else "", channel,
                          f"velocity -> {base.command_topic}" if i == 0 else "", "",
                          f"{base.max_velocity[i]:.3g}", "", "", "", "" if start is None else str(start + i))
    console.print(table)
    if embodiment.cameras:
        cameras = Table(title="cameras")
        for column in ("camera", "topic", "frame", "resolution", "rate [Hz]", "fovy [deg]"):
            cameras.add_column(column)
        for camera in embodiment.cameras.values():
            cameras.add_row(camera.name, camera.topic, camera.frame, f"{camera.width}x{camera.height}",
                            f"{camera.rate_hz:g}", f"{camera.fovy_deg:g}")
        console.print(cameras)
    commanded = sum(len(g.joints) for g in embodiment.commanded_groups)
    console.print(
        f"[green]ok[/]: {commanded} commanded joints, action vector {embodiment.layout.used} of "
        f"{embodiment.layout.width} slots ({', '.join(embodiment.config.action.groups)}), "
        f"control at {embodiment.control_rate_hz:g} Hz, URDF {embodiment.description.path.resolve()}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vla_ros.embodiment import load_embodiment
    from vla_ros.embodiment.ros2_control import MOCK_HARDWARE, controller_name, export

    embodiment = load_embodiment(args.config)
    written = export(embodiment, args.out)
    for group in embodiment.commanded_groups:
        print(f"{controller_name(group)}: forward_command_controller, {group.mode}, {', '.join(group.joints)}")
    for path, what in ((written.urdf, f"URDF + <ros2_control> with {MOCK_HARDWARE}: put your robot's hardware "
                                      "plugin there"),
                       (written.gazebo_urdf, "URDF + <ros2_control> for gz_ros2_control, the plugin and the cameras"),
                       (written.controllers, "controllers (controller_manager YAML)"),
                       (written.bridge, "ros_gz_bridge: /clock and the cameras")):
        print(f"wrote {path}: {what}")
    return 0
