"""recorder_node: episodes of the running graph as bags that training reads, labelled by ~/finish."""
import numpy as np
import pytest
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from vla_ros.data.bag import read_episode
from vla_ros.data.dataset import episode_samples
from vla_ros.embodiment import load_embodiment

ARM7 = load_embodiment("arm7")


def test_records_each_episode_with_its_corrections_and_the_label_finish_gives(ros, tmp_path):
    """Each episode is recorded with its corrections and the label ~/finish gives.

    Sim, controller and recorder: the sim's instruction starts episode 1; a correction and ~/finish
    (success) end it; the sim's reset starts episode 2, which stopping the recorder keeps
    unlabelled. Both bags read back as training reads them: joint states at the control rate, the
    controller's targets, both cameras, the instruction, the correction, the outcome.
    """
    diagnostics = ros.diagnostics()

    def recorder_status(predicate, what: str) -> dict:
        return diagnostics.wait("recorder_node", predicate, 60, what)

    recorder = ros.start_node("recorder_node", out_dir=str(tmp_path / "episodes"))
    finish = ros.node.create_client(SetBool, "recorder_node/finish")
    ros.spin_until(finish.service_is_ready, 30, "recorder_node/finish")
    answer = ros.call(finish, SetBool.Request(data=True))
    assert not answer.success and "waiting for an instruction" in answer.message, "nothing to label yet"

    ros.start_node("sim_node", task="reach:blue", seed=11)
    ros.start_node("controller_node")
    recorder_status(lambda s: "recording episode 1" in s["message"], "episode 1 under way")
    corrections = ros.node.create_publisher(String, "vla/correction", 10)
    ros.spin_until(lambda: corrections.get_subscription_count() > 0, 20, "the recorder on vla/correction")
    corrections.publish(String(data="a bit further left"))
    recorder_status(lambda s: all(int(v) >= 5 for k, v in s.items() if k.startswith("frames_")),
                    "five frames of each camera (the sim renders them in a process it starts last)")
    recorder_status(lambda s: int(s["commands"]) > 600, "over a second of the controller's targets (started last)")
    answer = ros.call(finish, SetBool.Request(data=True))
    assert answer.success, answer.message
    first = answer.message.removeprefix("recorded ")

    reset = ros.node.create_client(Trigger, "sim_node/reset")
    ros.spin_until(reset.service_is_ready, 30, "sim_node/reset")
    assert ros.call(reset, Trigger.Request()).success
    recorder_status(lambda s: "recording episode 2" in s["message"], "episode 2 under way")
    assert recorder.stop() == 0, recorder.describe()

    episode = read_episode(first)
    assert episode.outcome["success"] is True and episode.outcome["finished_by"] == "~/finish"
    assert [text for _, text in episode.instructions] == ["reach the blue cube"]
    assert [text for _, text in episode.corrections] == ["a bit further left"]
    assert episode.outcome["corrections"] == ["a bit further left"]
    states = episode.joint_states
    assert "joint1" in states.names and len(states.times) > 500
    assert np.median(np.diff(states.times)) == pytest.approx(1.0 / ARM7.control_rate_hz, rel=0.05)
    assert episode.commands.names == tuple(j for g in ARM7.commanded_groups for j in g.joints)
    assert len(episode.commands.times) > 500, "the controller's targets, every period"
    for camera in ARM7.cameras.values():
        times, frames = episode.images[camera.topic]
        assert frames.shape[1:] == (camera.height, camera.width, 3) and len(frames) >= 5
        assert frames.std() > 5, "rendered scenes, not blank frames"
    assert episode.info["embodiment"] == "arm7" and episode.info["instruction"] == "reach the blue cube"
    assert episode_samples(episode, ARM7, 16, 0.05, (64, 64)).success, "training takes it, as a success"

    second = sorted(p for p in (tmp_path / "episodes").iterdir() if p.is_dir() and str(p) != first)
    assert len(second) == 1
    kept = read_episode(second[0], cameras=False)
    assert kept.outcome["success"] is None and kept.outcome["finished_by"] == "recorder stopped"


def test_an_out_dir_it_cannot_make_stops_it_with_the_reason(ros, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    node = ros.start_node("recorder_node", out_dir=str(blocker / "episodes"))
    assert node.popen.wait(timeout=30) == 2
    assert "cannot make out_dir" in node.output()
