"""An embodiment as ros2_control sees it.

The URDF with `<ros2_control>` tags, a controllers YAML, and the ros_gz_bridge topics for Gazebo.

controller_node publishes each commanded group's targets on `<group>_controller/commands`
(std_msgs/Float64MultiArray, in the group's joint order): exactly what a ros2_control
forward_command_controller named `<group>_controller` subscribes to. So the export declares one
such controller per commanded group, with the group's command interface (effort, position or
velocity), plus a joint_state_broadcaster for `joint_states`; our nodes then drive the hardware
(or Gazebo, through gz_ros2_control) unchanged. Delegated groups (a humanoid's legs) stay out:
the vendor's balance stack owns them. A mobile base takes cmd_vel from its own driver (or a
Gazebo drive plugin) and is not a ros2_control joint here.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import yaml

from vla_ros.embodiment.config import EmbodimentError
from vla_ros.embodiment.embodiment import Camera, Embodiment, JointGroup
from vla_ros.embodiment.urdf import RobotDescription

# ros2_control's own stand-in hardware: echoes commands back as states. A physical robot replaces
# it with its vendor's hardware interface plugin (the one line the exported file marks).
MOCK_HARDWARE = "mock_components/GenericSystem"
GAZEBO_HARDWARE = "gz_ros2_control/GazeboSimSystem"
GAZEBO_PLUGIN = ("gz_ros2_control-system", "gz_ros2_control::GazeboSimROS2ControlPlugin")
STATE_INTERFACES = ("position", "velocity", "effort")


@dataclass(frozen=True)
class Export:
    """What export() wrote: the two URDFs, the controllers YAML and the bridge YAML."""

    urdf: Path  # <ros2_control> with MOCK_HARDWARE: swap in the robot's hardware plugin
    gazebo_urdf: Path  # <ros2_control> with gz_ros2_control, the plugin, camera sensors
    controllers: Path
    bridge: Path


def controller_name(group: JointGroup) -> str:
    """`<name>` of a group whose command topic is `<name>/commands` (by default `<group>_controller`)."""
    topic = group.command_topic or f"{group.name}_controller/commands"
    name, _, leaf = topic.strip("/").rpartition("/")
    if leaf != "commands" or not name or "/" in name:
        raise EmbodimentError(f"groups.{group.name}.command_topic", f"{topic!r} is not <controller>/commands",
                              "a ros2_control forward_command_controller listens on <controller name>/commands")
    return name


def controllers(embodiment: Embodiment) -> dict:
    """The controller_manager YAML: a joint_state_broadcaster and a forward command controller per group.

    At the embodiment's control rate, for each commanded group.
    """
    manager = {"update_rate": int(round(embodiment.control_rate_hz)),
               "joint_state_broadcaster": {"type": "joint_state_broadcaster/JointStateBroadcaster"}}
    document = {"controller_manager": {"ros__parameters": manager}}
    for group in embodiment.commanded_groups:
        name = controller_name(group)
        manager[name] = {"type": "forward_command_controller/ForwardCommandController"}
        document[name] = {"ros__parameters": {"joints": list(group.joints), "interface_name": group.mode}}
    return document


def bridge(embodiment: Embodiment) -> list[dict]:
    """ros_gz_bridge entries: /clock and each camera, Gazebo to ROS, under the same topic names."""
    entries = [{"ros_topic_name": "/clock", "gz_topic_name": "clock", "ros_type_name": "rosgraph_msgs/msg/Clock",
                "gz_type_name": "gz.msgs.Clock", "direction": "GZ_TO_ROS"}]
    for camera in embodiment.cameras.values():
        entries.append({"ros_topic_name": camera.topic, "gz_topic_name": camera.topic,
                        "ros_type_name": "sensor_msgs/msg/Image", "gz_type_name": "gz.msgs.Image",
                        "direction": "GZ_TO_ROS"})
    return entries


def urdf_with_ros2_control(embodiment: Embodiment, gazebo: bool, controllers_file: Path | None = None) -> str:
    """The embodiment's URDF with a `<ros2_control>` system of its commanded joints.

    For Gazebo also the gz_ros2_control plugin reading `controllers_file` and a camera sensor per
    camera.
    """
    description = embodiment.description
    try:
        root = ElementTree.fromstring(description.xml)
    except ElementTree.ParseError as error:
        raise EmbodimentError("urdf", f"{description.path} is not XML: {error}", "fix the URDF") from None
    _absolute_meshes(root, description)
    system = ElementTree.SubElement(root, "ros2_control", name=embodiment.name, type="system")
    hardware = ElementTree.SubElement(system, "hardware")
    ElementTree.SubElement(hardware, "plugin").text = GAZEBO_HARDWARE if gazebo else MOCK_HARDWARE
    for group in embodiment.commanded_groups:
        for joint in group.joints:
            element = ElementTree.SubElement(system, "joint", name=joint)
            ElementTree.SubElement(element, "command_interface", name=group.mode)
            for interface in STATE_INTERFACES:
                ElementTree.SubElement(element, "state_interface", name=interface)
    if gazebo:
        plugin = ElementTree.SubElement(ElementTree.SubElement(root, "gazebo"), "plugin",
                                        filename=GAZEBO_PLUGIN[0], name=GAZEBO_PLUGIN[1])
        ElementTree.SubElement(plugin, "parameters").text = str(controllers_file)
        for name, camera in embodiment.cameras.items():
            reference = ElementTree.SubElement(root, "gazebo", reference=camera.frame)
            sensor = ElementTree.SubElement(reference, "sensor", name=name, type="camera")
            ElementTree.SubElement(sensor, "topic").text = camera.topic
            ElementTree.SubElement(sensor, "update_rate").text = f"{camera.rate_hz:g}"
            ElementTree.SubElement(sensor, "always_on").text = "true"
            optics = ElementTree.SubElement(sensor, "camera")
            ElementTree.SubElement(optics, "horizontal_fov").text = f"{_horizontal_fov(camera):.6f}"
            image = ElementTree.SubElement(optics, "image")
            ElementTree.SubElement(image, "width").text = str(camera.width)
            ElementTree.SubElement(image, "height").text = str(camera.height)
            ElementTree.SubElement(image, "format").text = "R8G8B8"
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def export(embodiment: Embodiment, out: Path) -> Export:
    """Write `<name>.urdf`, `<name>.gazebo.urdf`, `<name>_controllers.yaml` and `<name>_gz_bridge.yaml` into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = Export(out / f"{embodiment.name}.urdf", out / f"{embodiment.name}.gazebo.urdf",
                     out / f"{embodiment.name}_controllers.yaml", out / f"{embodiment.name}_gz_bridge.yaml")
    written.controllers.write_text(yaml.safe_dump(controllers(embodiment), sort_keys=False))
    written.bridge.write_text(yaml.safe_dump(bridge(embodiment), sort_keys=False))
    written.urdf.write_text(urdf_with_ros2_control(embodiment, gazebo=False))
    written.gazebo_urdf.write_text(urdf_with_ros2_control(embodiment, gazebo=True,
                                                          controllers_file=written.controllers.resolve()))
    return written


def _absolute_meshes(root: ElementTree.Element, description: RobotDescription) -> None:
    """Relative mesh paths resolved as the description resolves them, so the copy works from anywhere."""
    for mesh in root.iter("mesh"):
        filename = mesh.get("filename", "")
        found = description.resolve_uri(filename) if filename and "://" not in filename else None
        if found is not None and not os.path.isabs(filename):
            mesh.set("filename", "file://" + str(found.resolve()))


def _horizontal_fov(camera: Camera) -> float:
    """[rad] Gazebo's camera angle (horizontal) from our vertical field of view and the aspect ratio."""
    return 2.0 * math.atan(math.tan(math.radians(camera.fovy_deg) / 2.0) * camera.width / camera.height)
