"""`vla-ros embodiment init` then `check`: shipped URDFs, vendor URDFs and xacro files, /robot_description."""
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import console_script
from vla_ros.embodiment import EmbodimentError, UrdfError, load_embodiment
from vla_ros.embodiment.draft import draft_embodiment

REPO = Path(__file__).resolve().parents[1]


def init_then_check(urdf: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([console_script("vla-ros"), "embodiment", "init", str(urdf), "-o", str(output)],
                          capture_output=True, text=True, timeout=300)


def groups_of(embodiment) -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {name: (g.kind, g.joints) for name, g in embodiment.groups.items()}
    if embodiment.base is not None:
        found[embodiment.base.name] = ("base", embodiment.base.wheel_joints)
    return found


def test_the_shipped_ur5e_is_what_init_drafts_from_its_vendor_urdf_with_cameras_renamed(tmp_path):
    """config/ur5e.yaml is init's draft of urdf/ur5e/ur5e.urdf; only the camera names changed (front, wrist)."""
    drafted = draft_and_load(REPO / "urdf" / "ur5e" / "ur5e.urdf", tmp_path / "ur5e.yaml")
    shipped = load_embodiment("ur5e")
    assert groups_of(drafted) == groups_of(shipped) == {"arm": ("arm", (
        "shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint", "wrist_3_joint"))}
    draft, config = (yaml.safe_load(path.read_text()) for path in (tmp_path / "ur5e.yaml", REPO / "config/ur5e.yaml"))
    renamed = {"front_camera": "front", "wrist_camera": "wrist"}
    draft["cameras"] = {renamed[name]: {**camera, "topic": f"camera/{renamed[name]}/image_raw"}
                        for name, camera in draft["cameras"].items()}
    assert {k: v for k, v in draft.items() if k != "urdf"} == {k: v for k, v in config.items() if k != "urdf"}


@pytest.mark.parametrize("name", ["arm7", "mobile_manipulator", "humanoid_upper"])
def test_init_finds_the_groups_of_the_shipped_embodiments(tmp_path, name):
    """The draft of each shipped URDF checks clean and has exactly the hand-written groups."""
    output = tmp_path / f"{name}.yaml"
    result = init_then_check(REPO / "urdf" / f"{name}.urdf", output)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHECK" in output.read_text(), "the draft marks what a person should review"
    drafted, shipped = load_embodiment(output), load_embodiment(name)
    assert groups_of(drafted) == groups_of(shipped)
    assert {g.name for g in drafted.delegated_groups} == {g.name for g in shipped.delegated_groups}
    assert [s.names for s in drafted.layout.slots] == [s.names for s in sorted(
        shipped.layout.slots, key=lambda s: [s.group for s in drafted.layout.slots].index(s.group))]
    assert {c.frame for c in drafted.cameras.values()} == {c.frame for c in shipped.cameras.values()}
    for group in drafted.commanded_groups:
        assert group.ee_frame == shipped.groups[group.name].ee_frame


def test_init_refuses_to_overwrite(tmp_path):
    output = tmp_path / "arm7.yaml"
    output.write_text("keep me")
    result = init_then_check(REPO / "urdf/arm7.urdf", output)
    assert result.returncode == 2 and "--force" in result.stderr
    assert output.read_text() == "keep me"


def vendor_robots() -> Path:
    """example-robot-data's robots/ directory (URDFs with their meshes), or skip if not installed."""
    try:
        distribution = importlib.metadata.distribution("example-robot-data")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("example-robot-data (PyPI) is not installed: `make setup` installs it with the test extra")
    return Path(distribution.locate_file("cmeel.prefix/share/example-robot-data/robots"))


# (URDF under robots/, expected group kinds -> joint counts, delegated groups)
VENDOR = {
    "panda": ("panda_description/urdf/panda.urdf", {"arm": 7, "gripper": 1}, set()),
    "ur5": ("ur_description/urdf/ur5_robot.urdf", {"arm": 6}, set()),
    "xarm7": ("xarm_description/urdf/xarm7.urdf", {"arm": 7}, set()),
    "so100": ("so_arm_description/urdf/so100.urdf", {"arm": 5, "gripper": 1}, set()),
    "tiago": ("tiago_description/robots/tiago.urdf", {"arm": 7, "torso": 1, "head": 2, "base": 2}, set()),
    "pr2": ("pr2_description/urdf/pr2.urdf", {"right_arm": 7, "left_arm": 7, "torso": 1, "head": 2}, set()),
    "baxter": ("baxter_description/urdf/baxter.urdf", {"right_arm": 7, "left_arm": 7}, set()),
    "talos": ("talos_data/robots/talos_full_v2.urdf", {"left_arm": 7, "right_arm": 7, "torso": 2, "legs": 12},
              {"legs"}),
    "g1": ("g1_description/urdf/g1_29dof_with_hand_rev_1_0.urdf",
           {"left_arm": 7, "right_arm": 7, "torso": 3, "legs": 12, "left_hand": 7, "right_hand": 7}, {"legs"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("robot", VENDOR)
def test_init_then_check_on_vendor_urdfs_with_meshes(tmp_path, robot):
    """Real URDFs (package:// meshes, mimic joints, wheels, humanoid legs) draft and check clean."""
    relative, expected_groups, expected_delegated = VENDOR[robot]
    urdf = vendor_robots() / relative
    output = tmp_path / f"{robot}.yaml"
    result = init_then_check(urdf, output)
    assert result.returncode == 0, result.stdout + result.stderr
    embodiment = load_embodiment(output)
    assert not embodiment.description.unresolved_meshes()
    assert any(link.meshes for link in embodiment.description.links.values()), "a URDF with meshes"
    sizes = {name: len(joints) for name, (_, joints) in groups_of(embodiment).items()}
    for group, count in expected_groups.items():
        name = group if group in sizes else next(n for n in sizes if n.startswith(group) or group in n)
        assert sizes[name] == count, f"{robot}: {name} has {sizes[name]} joints, expected {count}: {sizes}"
    assert {g.name for g in embodiment.delegated_groups} == expected_delegated


def installed_file(distribution: str, relative: str) -> Path:
    """A file shipped by PyPI distribution `distribution`, or skip when it is not installed."""
    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} (PyPI) is not installed: `make setup` installs it with the test extra")
    return Path(found.locate_file(relative))


def draft_and_load(source: Path, output: Path, xacro_args: dict[str, str] | None = None):
    """What `embodiment init` then `check` do, in-process: the draft written, then loaded."""
    output.write_text(draft_embodiment(source, output, xacro_args))
    return load_embodiment(output)


STRETCH_SE3 = "stretch_urdf/SE3/xacro/stretch_description_SE3_eoa_wrist_dw3_tool_sg3.xacro"
# (distribution, file, what is odd about it, group kinds it must have)
VENDOR_QUIRKS = {
    "stretch_se3_urdf": ("hello-robot-stretch-urdf", "stretch_urdf/SE3/stretch_description_SE3_eoa_wrist_dw3_tool_sg3"
                         ".urdf", "finger joints without a velocity limit", {"arm", "gripper", "head", "base"}),
    "stretch_re2_xacro": ("hello-robot-stretch-urdf", "stretch_urdf/RE2V0/xacro/stretch_description_RE2V0_tool_stretch_"
                          "gripper.xacro", "xacro; meshes in the folder above it", {"arm", "gripper", "base"}),
    "jvrc1": ("jvrc-description", "jvrc_description/urdf/jvrc1.urdf", "humanoid with legs", {"legs", "arm"}),
    "upkie": ("upkie-description", "upkie_description/urdf/upkie.urdf", "<limit> without lower/upper",
              {"legs", "base"}),
    "fingerpro": ("robot-properties-fingers", "robot_properties_fingers/urdf/pro/fingerpro.urdf", "no arm",
                  {"hand"}),
    "ur5e_airo": ("airo-models", "airo_models/arms/ur5e/ur5e.urdf", "undeclared drake: attribute prefix", {"arm"}),
}


@pytest.mark.parametrize("robot", VENDOR_QUIRKS)
def test_init_then_check_on_vendor_quirks(tmp_path, robot):
    """Vendor descriptions with the quirks found in the survey draft and check clean, meshes found."""
    distribution, relative, _, kinds = VENDOR_QUIRKS[robot]
    embodiment = draft_and_load(installed_file(distribution, relative), tmp_path / f"{robot}.yaml")
    assert not embodiment.description.unresolved_meshes()
    found = {g.kind for g in embodiment.groups.values()} | ({"base"} if embodiment.base else set())
    assert kinds <= found, found


def test_init_expands_a_xacro_file_with_its_arguments(tmp_path):
    """`init robot.xacro --xacro-arg` writes urdf + xacro_args, and loading expands it the same way."""
    xacro = installed_file("hello-robot-stretch-urdf", STRETCH_SE3)
    output = tmp_path / "stretch.yaml"
    result = subprocess.run([console_script("vla-ros"), "embodiment", "init", str(xacro), "--xacro-arg",
                             "use_nominal_extrinsics:=true", "-o", str(output)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    assert 'xacro_args: {use_nominal_extrinsics: "true"}' in text
    assert "velocity_limits: {joint_gripper_finger_right: 0.5" in text and "CHECK" in text
    embodiment = load_embodiment(output)
    assert embodiment.description.path.resolve() == xacro.resolve()
    assert b"xacro:" not in embodiment.description.xml and not embodiment.description.unresolved_meshes()
    assert embodiment.base is not None and "joint_lift" in embodiment.groups["arm"].joints


def write_box_stl(path: Path) -> None:
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box((0.1, 0.1, 0.1)).export(path)


TWO_LINKS = """<robot name="{name}" {namespaces}>
  <link name="base"><visual><geometry><mesh filename="{mesh}"/></geometry></visual></link>
  <link name="tip"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/>
  </inertial></link>
  <joint name="gripper" type="revolute"><parent link="base"/><child link="tip"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="{upper}" effort="10" {velocity}/></joint>
</robot>
"""


def test_xacro_find_and_args_resolve_through_the_package_lookup(tmp_path):
    """$(find PKG) in a xacro file finds a folder named PKG up the tree; $(arg) takes --xacro-arg values."""
    package = tmp_path / "my_robot_description"
    write_box_stl(package / "meshes" / "box.stl")
    (package / "urdf").mkdir()
    (package / "urdf" / "robot.urdf.xacro").write_text(TWO_LINKS.format(
        name="my_robot", namespaces='xmlns:xacro="http://www.ros.org/wiki/xacro"', upper="$(arg upper)",
        mesh="file://$(find my_robot_description)/meshes/box.stl", velocity='velocity="1"'))
    embodiment = draft_and_load(package / "urdf" / "robot.urdf.xacro", tmp_path / "robot.yaml", {"upper": "0.5"})
    assert embodiment.description.joints["gripper"].upper == 0.5
    assert embodiment.description.resolve_uri(f"file://{package}/meshes/box.stl") is not None


def test_urdf_with_xacro_substitutions_gets_a_one_line_error_with_the_fix(tmp_path):
    """A .urdf still holding $(optenv ...) names it and says to expand it or pass the .xacro."""
    urdf = tmp_path / "robot.urdf"
    urdf.write_text(TWO_LINKS.format(name="r", namespaces="", upper="$(optenv PAN_UPPER 1.0)", mesh="box.stl",
                                     velocity='velocity="1"'))
    with pytest.raises(UrdfError) as raised:
        draft_embodiment(urdf, tmp_path / "robot.yaml")
    assert "'$(optenv PAN_UPPER 1.0)'" in raised.value.problem and "\n" not in raised.value.problem
    assert "xacro" in raised.value.fix and ".xacro" in raised.value.fix


def test_package_meshes_beside_the_urdf_resolve_and_are_written(tmp_path):
    """package://PKG/meshes/x.stl with meshes/ beside the URDF (a model folder) resolves; init writes package_dirs."""
    folder = tmp_path / "downloaded_model"
    write_box_stl(folder / "meshes" / "box.stl")
    (folder / "robot.urdf").write_text(TWO_LINKS.format(name="r", namespaces="", upper="1", velocity='velocity="1"',
                                                        mesh="package://some_vendor_description/meshes/box.stl"))
    output = tmp_path / "config" / "robot.yaml"
    output.parent.mkdir()
    embodiment = draft_and_load(folder / "robot.urdf", output)
    assert "package_dirs: [../downloaded_model]" in output.read_text()
    found = embodiment.description.resolve_uri("package://some_vendor_description/meshes/box.stl")
    assert found.resolve() == folder / "meshes" / "box.stl"


def test_missing_velocity_limit_gets_a_checked_default_and_hand_written_files_still_fail(tmp_path):
    """A joint with no velocity limit drafts a CHECK default that passes; without it check names the fix."""
    write_box_stl(tmp_path / "box.stl")
    urdf = tmp_path / "robot.urdf"
    urdf.write_text(TWO_LINKS.format(name="r", namespaces="", upper="1", velocity='velocity="0"', mesh="box.stl"))
    output = tmp_path / "robot.yaml"
    draft_and_load(urdf, output)
    text = output.read_text()
    assert "velocity_limits: {gripper: 0.5}  # CHECK" in text
    output.write_text(text.replace("velocity_limits: {gripper: 0.5}", ""))
    with pytest.raises(EmbodimentError) as raised:
        load_embodiment(output)
    assert "no velocity limit" in raised.value.problem and "velocity_limits" in raised.value.fix


PUBLISHER = """
import sys
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

rclpy.init()
node = rclpy.create_node("robot_state_publisher")
publisher = node.create_publisher(String, "robot_description",
                                  QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
publisher.publish(String(data=open(sys.argv[1]).read()))
print("published", flush=True)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def test_init_from_topic_reads_a_latched_robot_description(ros, tmp_path):
    """A process latching the URDF like robot_state_publisher: --from-topic saves it and drafts from it."""
    publisher = ros.start([sys.executable, "-c", PUBLISHER, str(REPO / "urdf" / "arm7.urdf")],
                          name="robot_state_publisher")
    ros.spin_until(lambda: "published" in publisher.output() or not publisher.running(), 30, "the publisher")
    output = tmp_path / "arm.yaml"
    result = subprocess.run([console_script("vla-ros"), "embodiment", "init", "--from-topic", "--timeout", "30",
                             "-o", str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "arm.urdf").read_text() == (REPO / "urdf" / "arm7.urdf").read_text()
    assert "from_topic: /robot_description" in output.read_text()
    assert groups_of(load_embodiment(output)) == groups_of(load_embodiment("arm7"))


def test_init_from_topic_times_out_with_one_line(tmp_path):
    """Nothing publishing: --from-topic stops after --timeout with one line saying what to do."""
    result = subprocess.run([console_script("vla-ros"), "embodiment", "init", "--from-topic", "/no_robot_here",
                             "--timeout", "1", "-o", str(tmp_path / "x.yaml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no robot description on /no_robot_here" in result.stderr
    assert not (tmp_path / "x.yaml").exists()
