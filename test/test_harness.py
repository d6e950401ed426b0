"""The harness itself: real executables over real DDS, isolation, and no surviving children."""
import os
import uuid

import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from harness import (
    RosHarness,
    kill_processes_with_token,
    processes_with_token,
    ros2_run,
)


def test_session_runs_in_a_private_localhost_domain(ros):
    """Tests and every child they start share one non-default domain, discovered on localhost only."""
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 200
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    probe = ros.start(["sh", "-c", "echo $ROS_DOMAIN_ID $ROS_AUTOMATIC_DISCOVERY_RANGE"], name="env")
    assert probe.popen.wait(timeout=10) == 0
    assert probe.output().split() == [os.environ["ROS_DOMAIN_ID"], "LOCALHOST"]


def test_round_trip_through_a_child_process(ros):
    """A message published here comes back from the echo executable in another process."""
    nonce = uuid.uuid4().hex
    ros.start_node("echo_node", remappings=[("ping", "rt/ping"), ("pong", "rt/pong")])
    replies = ros.subscribe("rt/pong", String)
    ping = ros.node.create_publisher(String, "rt/ping", 10)

    def echoed() -> bool:
        ping.publish(String(data=nonce))  # volatile QoS: resend until discovery has matched us
        return any(msg.data == nonce for msg in replies)

    ros.spin_until(echoed, timeout_s=20, what="the echo of our ping")


@pytest.mark.parametrize("name, waiting", [
    ("policy_node", "waiting for an instruction on vla/instruction"),
    ("controller_node", "waiting for joint_states"),
])
def test_built_node_runs_via_ros2_run_layout_and_says_what_it_waits_for(ros, name, waiting):
    """lib/vla_ros/<name> starts the real node, which reports what it waits for and stops on SIGINT.

    policy_node runs the hold backend; the status is on /diagnostics; SIGINT exits 0.
    """
    diagnostics = ros.diagnostics()
    node = ros.start([ros2_run(name)], name=name)
    status = diagnostics.wait(name, timeout_s=20)
    assert status["level"] == 1 and status["message"] == waiting
    assert node.stop() == 0, node.describe()


def test_sim_node_runs_via_ros2_run_layout_and_stops_cleanly(ros):
    """lib/vla_ros/sim_node starts the simulator (joint_states flow) and exits 0 on SIGINT."""
    node = ros.start([ros2_run("sim_node"), "--ros-args", "-p", "publish_cameras:=false"], name="sim_node")
    msg = ros.wait_for("joint_states", JointState, timeout_s=60)
    assert "joint1" in msg.name
    assert node.stop() == 0, node.describe()


def test_timeout_reports_child_output(ros):
    """Waiting for a topic nobody publishes fails with what each child printed."""
    ros.start(["sh", "-c", "echo marker-from-child; sleep 30"], name="chatty")
    with pytest.raises(AssertionError) as failure:
        ros.wait_for("nobody/publishes/this", String, timeout_s=1.0)
    assert "nobody/publishes/this" in str(failure.value)
    assert "marker-from-child" in str(failure.value)


def test_children_are_stopped_when_the_test_body_raises(tmp_path):
    """An exception in the test body still stops every child the harness started."""
    with pytest.raises(RuntimeError, match="boom"):
        with RosHarness(tmp_path) as harness:
            node = harness.start([ros2_run("controller_node")], name="controller_node")
            harness.start(["sh", "-c", "sleep 60 & exec sleep 60"], name="with-grandchild")
            raise RuntimeError("boom")
    assert processes_with_token(harness.token) == []
    with pytest.raises(ProcessLookupError):
        os.kill(node.popen.pid, 0)


def escaped_from(session_id: int, token: str) -> list[int]:
    """Processes carrying `token` that have left session `session_id` (called setsid())."""
    escaped = []
    for pid in processes_with_token(token):
        try:
            if os.getsid(pid) != session_id:
                escaped.append(pid)
        except ProcessLookupError:
            continue
    return escaped


def test_survivor_scan_finds_a_grandchild_that_escaped_its_group(tmp_path):
    """A grandchild that left the process group survives close(), and the scan catches it."""
    with RosHarness(tmp_path) as harness:
        escaper = harness.start(["sh", "-c", "setsid sleep 60 & sleep 60"], name="escaper")
        harness.spin_until(lambda: len(escaped_from(escaper.popen.pid, harness.token)) == 1, 10,
                           "the background sleep to call setsid() and leave the group")
    try:
        survivors = processes_with_token(harness.token)
        assert len(survivors) == 1
    finally:
        kill_processes_with_token(harness.token)
    assert processes_with_token(harness.token) == []
