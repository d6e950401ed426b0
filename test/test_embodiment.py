"""Embodiment files: the shipped robots, the action layout, and every validation error's message."""
import copy
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import console_script
from vla_ros.embodiment import EmbodimentError, LayoutError, load_embodiment
from vla_ros.embodiment.layout import pad

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["arm7", "mobile_manipulator", "humanoid_upper"]


def arm7_data() -> dict:
    data = yaml.safe_load((REPO / "config/arm7.yaml").read_text())
    data["urdf"] = str(REPO / "urdf/arm7.urdf")
    return data


def write(tmp_path: Path, data: dict, name: str = "robot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_for(tmp_path: Path, data: dict) -> str:
    """The message of the EmbodimentError that loading `data` raises (the test fails if none)."""
    path = write(tmp_path, data)
    with pytest.raises(EmbodimentError) as caught:
        load_embodiment(path)
    message = str(caught.value)
    assert str(path) in message, "every error names the file"
    assert "fix:" in message, "every error says how to fix it"
    return message


def test_shipped_embodiments_have_the_expected_groups():
    """arm7, mobile_manipulator and humanoid_upper load with the groups, base and layout they promise."""
    arm7 = load_embodiment("arm7")
    groups = [(g.name, g.kind, len(g.joints)) for g in arm7.groups.values()]
    assert groups == [("arm", "arm", 7), ("gripper", "gripper", 1)]
    assert arm7.base is None and set(arm7.cameras) == {"front", "wrist"}
    mobile = load_embodiment("mobile_manipulator")
    assert mobile.base.channels == ("vx", "vy", "wz") and mobile.base.command_topic == "cmd_vel"
    assert [s.group for s in mobile.layout.slots] == ["arm", "gripper", "base"]
    humanoid = load_embodiment("humanoid_upper")
    assert [g.name for g in humanoid.delegated_groups] == ["legs"]
    assert len(humanoid.groups["legs"].joints) == 12
    assert "legs" not in [s.group for s in humanoid.layout.slots]
    assert {len(humanoid.groups[arm].joints) for arm in ("left_arm", "right_arm")} == {7}
    assert humanoid.groups["legs"].command_topic is None
    assert humanoid.groups["left_arm"].command_topic == "left_arm_controller/commands"


@pytest.mark.parametrize("name, tool", [("arm7", "tcp"), ("mobile_manipulator", "gripper_tcp")])
def test_the_wrist_camera_sees_where_the_fingers_close(name, tool):
    """The tool point lies well inside the wrist camera's picture, so the last centimetres of a grasp are seen."""
    embodiment = load_embodiment(name)
    camera = embodiment.cameras["wrist"]
    kinematics = embodiment.kinematics
    q = np.zeros(len(kinematics.joint_names))
    seen = np.linalg.inv(kinematics.frame_pose(q, camera.frame)) @ kinematics.frame_pose(q, tool)
    forward, left, up = seen[:3, 3]  # a camera link looks along its x axis, z up
    half_fovy = np.radians(camera.fovy_deg) / 2
    half_fovx = np.arctan(np.tan(half_fovy) * camera.width / camera.height)
    assert forward > 0
    assert abs(np.arctan2(left, forward)) < 0.5 * half_fovx and abs(np.arctan2(up, forward)) < 0.5 * half_fovy


@pytest.mark.parametrize("name", SHIPPED)
def test_home_pose_and_limits_come_from_file_and_urdf(name):
    """Position, velocity and effort limits come from the URDF; homes sit inside them."""
    embodiment = load_embodiment(name)
    for group in embodiment.groups.values():
        for i, joint in enumerate(group.joints):
            urdf_joint = embodiment.description.joints[joint]
            assert (group.lower[i], group.upper[i]) == (urdf_joint.lower, urdf_joint.upper)
            assert group.velocity_limit[i] == urdf_joint.velocity and group.effort_limit[i] == urdf_joint.effort
        assert np.all(group.home >= group.lower) and np.all(group.home <= group.upper)


@st.composite
def layout_values(draw, name):
    """An embodiment and a state in its layout: joint positions within their limits, base velocities within theirs."""
    embodiment = load_embodiment(name)
    values = []
    for slot in embodiment.layout.slots:
        if embodiment.base is not None and slot.group == embodiment.base.name:
            values += [draw(st.floats(-v, v)) for v in embodiment.base.max_velocity]
        else:
            group = embodiment.groups[slot.group]
            values += [draw(st.floats(lo, hi)) for lo, hi in zip(group.lower, group.upper)]
    return embodiment, np.array(values)


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_padding_round_trip_is_exact_and_padding_stays_zero(name, data):
    """Layout values -> padded vector -> layout values is exact; the slots no group owns are zero."""
    embodiment, values = data.draw(layout_values(name))
    layout = embodiment.layout
    vector = pad(values, layout.mask)
    assert vector.shape == (layout.width,) and np.all(vector[~layout.mask] == 0.0)
    assert layout.mask.sum() == len(values) == len(layout.names)
    assert np.array_equal(layout.unpad(vector), values)


def test_unpad_refuses_vectors_of_another_width():
    with pytest.raises(LayoutError, match="width 32"):
        load_embodiment("arm7").layout.unpad(np.zeros(8))


# Each validation error of the issue, and the others a user will meet, with the message it gives.
def mutate(change):
    data = arm7_data()
    change(data)
    return data


VALIDATION_ERRORS = {
    "unknown top-level key": (lambda d: d.update(contrl_rate_hz=100),
                              ["contrl_rate_hz: unknown key", "did you mean 'control_rate_hz'"]),
    "unknown group key": (lambda d: d["groups"]["arm"].update(kpp=[1] * 7),
                          ["groups.arm.kpp: unknown key", "did you mean 'kp'"]),
    "joint not in the URDF": (lambda d: d["groups"]["arm"]["joints"].__setitem__(6, "joint77"),
                              ["groups.arm.joints", "joint 'joint77' is not in arm7.urdf", "did you mean 'joint7'"]),
    "joint in two groups": (lambda d: (d["groups"]["gripper"]["joints"].append("joint7"),
                                       d["groups"]["gripper"].pop("home")),
                            ["groups.gripper.joints", "joint 'joint7' is also in group 'arm'", "exactly one group"]),
    "delegated group with gains": (lambda d: d["groups"]["gripper"].update(delegated=True),
                                   ["groups.gripper.mode", "delegated group, which vla_ros never commands"]),
    "delegated group in the action vector": (
        lambda d: d["groups"]["gripper"].update(delegated=True, mode=None, kp=None, kd=None, home=None),
        ["action.groups", "group 'gripper' is delegated", "in the action vector"]),
    "gains of the wrong length": (lambda d: d["groups"]["arm"].update(kd=[1.0] * 6),
                                  ["groups.arm.kd", "has 6 values for 7 joints"]),
    "missing camera topic": (lambda d: d["cameras"]["front"].pop("topic"), ["cameras.front.topic: is missing"]),
    "layout wider than its padded width": (lambda d: d["action"].update(width=4),
                                           ["action.width", "need 8 slots, more than the padded width 4"]),
    "wrong type": (lambda d: d["groups"]["arm"].update(kp="stiff"),
                   ["groups.arm.kp", "expected a number or a list of numbers, got str 'stiff'"]),
    "negative gain": (lambda d: d["groups"]["arm"].update(kp=-1.0), ["groups.arm.kp", "value -1.0 is below 0.0"]),
    "missing required key": (lambda d: d.pop("urdf"), ["urdf: is missing"]),
    "unknown control mode": (lambda d: d["groups"]["arm"].update(mode="torque"),
                             ["groups.arm.mode", "'torque' is not a control mode"]),
    "unknown effort law": (lambda d: d["groups"]["arm"].update(effort_law="computed_torque"),
                           ["groups.arm.effort_law", "'computed_torque' is not an effort law", "inverse_dynamics, pd"]),
    "effort law on a position group": (lambda d: d["groups"]["gripper"].update(effort_law="pd"),
                                       ["groups.gripper.effort_law", "applies to effort mode only"]),
    "inverse dynamics without damping": (lambda d: d["groups"]["arm"].update(kd=[0.0] * 7),
                                         ["groups.arm.effort_law", "needs kp > 0 and kd > 0", "effort_law: pd"]),
    "unknown group kind": (lambda d: d["groups"]["arm"].update(kind="armm"), ["groups.arm.kind", "did you mean 'arm'"]),
    "unknown group in the action": (lambda d: d["action"].update(groups=["arm", "grip"]),
                                    ["action.groups", "'grip'", "did you mean 'gripper'"]),
    "arm without an end-effector frame": (lambda d: d["groups"]["arm"].pop("ee_frame"),
                                          ["groups.arm.ee_frame", "is missing for an arm"]),
    "end-effector frame not in the URDF": (lambda d: d["groups"]["arm"].update(ee_frame="tpc"),
                                           ["groups.arm.ee_frame", "did you mean 'tcp'"]),
    "camera frame not in the URDF": (lambda d: d["cameras"]["wrist"].update(frame="wrist_cam"),
                                     ["cameras.wrist.frame", "'wrist_cam' is not in the URDF"]),
    "home outside the limits": (lambda d: d["groups"]["arm"]["home"].__setitem__(1, 2.5),
                                ["groups.arm.home", "joint2=2.5 is outside"]),
    "mimic joint in a group": (lambda d: d["groups"]["gripper"].update(joints=["finger_mimic_joint"]),
                               ["groups.gripper.joints", "mimics 'finger_joint'", "list 'finger_joint' instead"]),
    "fixed joint in a group": (lambda d: d["groups"]["gripper"].update(joints=["tcp_joint"]),
                               ["'tcp_joint' is fixed, not movable"]),
    "base channels out of order": (lambda d: d["groups"].update(base={"kind": "base", "channels": ["wz", "vx"],
                                                                      "max_velocity": [1, 1],
                                                                      "max_acceleration": [1, 1]}),
                                   ["groups.base.channels", "not an ordered subset"]),
    "missing URDF file": (lambda d: d.update(urdf="nowhere.urdf"), ["urdf: cannot read the URDF"]),
    "group settings not a mapping": (lambda d: d["groups"].update(arm=[1, 2]), ["groups.arm: expected a mapping"]),
}


@pytest.mark.parametrize("case", VALIDATION_ERRORS)
def test_validation_error_names_file_key_and_fix(tmp_path, case):
    change, expected = VALIDATION_ERRORS[case]
    message = error_for(tmp_path, mutate(change))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


BAD_URDFS = {
    "not XML": ("<robot name='x'><link name='a'>", "not a readable URDF"),
    "joint to a missing link": ("""<robot name="x"><link name="a"/><joint name="j" type="fixed"><parent link="a"/>
        <child link="ghost"/></joint></robot>""", "joint 'j' names child link 'ghost', which is not defined"),
    "two roots": ("""<robot name="x"><link name="a"/><link name="b"/></robot>""", "exactly one root link"),
    "joint defined twice": ("""<robot name="x"><link name="a"/><link name="b"/><link name="c"/>
        <joint name="j" type="fixed"><parent link="a"/><child link="b"/></joint>
        <joint name="j" type="fixed"><parent link="b"/><child link="c"/></joint></robot>""",
                            "joint 'j' is defined twice"),
    "limits inverted": ("""<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="revolute">
        <parent link="a"/><child link="b"/><axis xyz="0 0 1"/><limit lower="1" upper="-1" effort="1" velocity="1"/>
        </joint></robot>""",
                        "lower limit 1.0 above upper -1.0"),
    "revolute without limits": ("""<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="revolute">
        <parent link="a"/><child link="b"/></joint></robot>""", "<limit>"),
    "missing mesh": ("""<robot name="x"><link name="a"><visual><geometry><mesh filename="package://nothing/here.stl"/>
        </geometry></visual></link></robot>""", "mesh file(s) cannot be found"),
}


@pytest.mark.parametrize("case", BAD_URDFS)
def test_malformed_urdf_is_a_clear_error(tmp_path, case):
    urdf_text, expected = BAD_URDFS[case]
    (tmp_path / "bad.urdf").write_text(urdf_text)
    data = {"urdf": "bad.urdf", "groups": {}, "action": {"groups": []}}
    message = error_for(tmp_path, data)
    assert "urdf:" in message and expected in message, message


def test_malformed_yaml_reports_the_line(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("urdf: a.urdf\ngroups: {arm: [\n")
    with pytest.raises(EmbodimentError, match="not valid YAML at line 3"):
        load_embodiment(path)


def test_unknown_embodiment_name_suggests_a_shipped_one():
    with pytest.raises(EmbodimentError, match="did you mean 'arm7'"):
        load_embodiment("arm8")


def test_check_exits_0_with_a_table_for_shipped_embodiments():
    for name in SHIPPED:
        result = subprocess.run([console_script("vla-ros"), "embodiment", "check", name],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "action vector" in result.stdout and "slot" in result.stdout


@pytest.mark.parametrize("kind", ["bad config", "malformed urdf"])
def test_check_exits_2_without_traceback(tmp_path, kind):
    """`vla-ros embodiment check` on a broken file prints the message and exits 2, not 1."""
    if kind == "bad config":
        path = write(tmp_path, mutate(lambda d: d["groups"]["arm"].update(kd=[1.0] * 6)))
        expected = "has 6 values for 7 joints"
    else:
        (tmp_path / "bad.urdf").write_text("<robot name='x'><link")
        path = write(tmp_path, {"urdf": "bad.urdf", "groups": {}, "action": {"groups": []}})
        expected = "not a readable URDF"
    result = subprocess.run([console_script("vla-ros"), "embodiment", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert expected in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_delegated_group_is_never_commanded():
    """The humanoid's legs have no command topic, no gains, and no action slots."""
    humanoid = load_embodiment("humanoid_upper")
    legs = humanoid.groups["legs"]
    assert legs.delegated and legs.mode is None and legs.command_topic is None
    assert legs not in humanoid.commanded_groups
    used = {name for slot in humanoid.layout.slots for name in slot.names}
    assert not used & set(legs.joints)


def test_copy_of_config_is_independent():
    """Loading twice gives equal but separate configs (frozen dataclasses, no shared state)."""
    a, b = load_embodiment("arm7"), load_embodiment("arm7")
    assert a.config == b.config and a.config is not b.config
    with pytest.raises(Exception):
        a.config.groups["arm"].kind = "head"
    assert copy.deepcopy(a.config) == a.config
