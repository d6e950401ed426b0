"""`vla-ros embodiment init` then `check`: on the shipped URDFs and on real vendor URDFs with meshes."""
import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from harness import console_script
from vla_ros.embodiment import load_embodiment

REPO = Path(__file__).resolve().parents[1]


def init_then_check(urdf: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([console_script("vla-ros"), "embodiment", "init", str(urdf), "-o", str(output)],
                          capture_output=True, text=True, timeout=300)


def groups_of(embodiment) -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {name: (g.kind, g.joints) for name, g in embodiment.groups.items()}
    if embodiment.base is not None:
        found[embodiment.base.name] = ("base", embodiment.base.wheel_joints)
    return found


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
