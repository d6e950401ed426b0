"""The built-in VLA: shapes and masks per embodiment, learning, checkpoints, the builtin backend."""
import dataclasses
import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vla_ros.cli import main
from vla_ros.data.bag import read_episode
from vla_ros.data.collect import Collector
from vla_ros.data.dataset import episode_samples
from vla_ros.embodiment import EmbodimentIO, load_embodiment
from vla_ros.errors import VlaRosError
from vla_ros.model.checkpoint import load_checkpoint, save_checkpoint
from vla_ros.model.config import Architecture, CheckpointError, EmbodimentStats, ModelConfig
from vla_ros.model.ee_actions import EE_AXES, EeCoding
from vla_ros.model.language import InstructionReader, shared_encoder
from vla_ros.model.network import VLA
from vla_ros.model.normalization import Normalization
from vla_ros.model.training import (
    GOAL_NOISE,
    Batches,
    TrainSettings,
    add_embodiments,
    code_actions,
    goal_noise,
    make_optimizer,
    model_config,
    task_wordings,
    train,
)
from vla_ros.policy import ActionSpace, Observation, PolicyError, make_policy
from vla_ros.policy.spaces import ChunkAdapter
from vla_ros.sim.tasks import TASKS

SHIPPED = ("arm7", "mobile_manipulator", "humanoid_upper")
TINY = Architecture(image_size=(32, 32), channels=(8, 16, 16, 32), d_model=32, heads=2, trunk_layers=1,
                    expert_layers=1, denoising_steps=4, rtc_overlap=2)


def synthetic_stats(embodiment, rng) -> EmbodimentStats:
    io = EmbodimentIO(embodiment)
    states = rng.normal(size=(50, io.size)).astype(np.float32)
    actions = states[:, None, :] + rng.normal(scale=0.1, size=(50, 4, io.size)).astype(np.float32)
    return EmbodimentStats.from_data(io.names, embodiment.layout.mask, list(embodiment.cameras),
                                     [n in io.joints for n in io.names], states, actions)


@pytest.fixture(scope="module")
def embodiments():
    return {name: load_embodiment(name) for name in SHIPPED}


@pytest.fixture(scope="module")
def multi(embodiments):
    """One untrained model for all three shipped embodiments."""
    rng = np.random.default_rng(0)
    stats = {name: synthetic_stats(e, rng) for name, e in embodiments.items()}
    cameras = list(dict.fromkeys(c for e in embodiments.values() for c in e.cameras))
    torch.manual_seed(0)
    return VLA(ModelConfig(architecture=TINY, horizon=4, dt=0.1, cameras=cameras, embodiments=stats))


@pytest.mark.parametrize("name", SHIPPED)
def test_one_model_serves_every_shipped_embodiment_in_its_own_slots(multi, embodiments, name):
    embodiment = embodiments[name]
    stats = multi.config.embodiments[name]
    normalization = Normalization(stats, multi.config.width)
    images = {c: torch.rand(3, 3, 32, 32) for c in stats.cameras}
    state = torch.from_numpy(normalization.state(np.zeros((3, len(stats.names)), np.float32)))
    context, goal = multi.prefix(images, torch.randn(3, 384), state, name)
    assert goal is None, "these statistics name no goal frame: no goal token"
    mask = torch.from_numpy(normalization.mask.astype(np.float32))
    chunk = multi.sample(context, mask, 4, torch.Generator().manual_seed(0))
    assert chunk.shape == (3, 4, 32)
    assert torch.all(chunk[..., ~normalization.mask] == 0) and torch.all(chunk[..., normalization.mask] != 0)
    assert normalization.mask.sum() == EmbodimentIO(embodiment).size == len(embodiment.layout.names)
    # The loss sees only the embodiment's slots: whatever sits in the padding does not change it.
    actions = torch.randn(3, 4, 32) * mask
    noisy_padding = actions + torch.randn(3, 4, 32) * (1 - mask)
    with torch.no_grad():
        losses = [float(multi.loss(context, a, torch.from_numpy(normalization.mask), torch.Generator().manual_seed(1)))
                  for a in (actions, noisy_padding)]
    assert losses[0] == pytest.approx(losses[1])


def test_the_expert_with_cached_prefix_keys_computes_what_its_decoder_layers_do(multi):
    """velocity() with cached keys and values computes what the decoder layers do.

    velocity() evaluates the expert's nn.TransformerDecoderLayers by hand with the prefix's keys and
    values cached; the modules' own forward must give the same flow, and gradients reach every layer.
    """
    from vla_ros.model.network import time_embedding

    torch.manual_seed(1)
    context, noisy, t = torch.randn(3, 20, 32), torch.randn(3, 4, multi.config.width), torch.rand(3)
    with torch.no_grad():
        x = multi.action_in(noisy) + multi.step_embedding + multi.time_mlp(time_embedding(t, 32))[:, None]
        expected = multi.action_out(multi.expert(x, context))
        torch.testing.assert_close(multi.velocity(multi.memory(context), noisy, t), expected, atol=1e-5, rtol=1e-4)
    multi.zero_grad()
    multi.velocity(multi.memory(context), noisy, t).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in multi.expert.parameters())
    multi.zero_grad()


@pytest.mark.parametrize("name", SHIPPED)
def test_normalization_round_trips_actions_relative_to_the_state(embodiments, name):
    rng = np.random.default_rng(1)
    stats = synthetic_stats(embodiments[name], rng)
    normalization = Normalization(stats, 32)
    states = rng.normal(size=(5, len(stats.names))).astype(np.float32)
    actions = rng.normal(size=(5, 4, len(stats.names))).astype(np.float32)
    vectors = normalization.actions(actions, states)
    assert vectors.shape == (5, 4, 32) and np.all(vectors[..., ~normalization.mask] == 0)
    np.testing.assert_allclose(normalization.unnormalize(vectors, states), actions, atol=1e-5)
    if EmbodimentIO(embodiments[name]).base:  # base velocities are absolute, joints relative to the state
        assert not all(stats.relative) and any(stats.relative)


@pytest.mark.parametrize("in_tool", [True, False])
def test_goal_token_noise_fades_at_a_tool_frame_goal_and_not_at_a_root_frame_one(embodiments, in_tool):
    """Seen from the tool, a goal at the tool gets no noise and one 10 cm or more away the full amount."""
    rng = np.random.default_rng(2)
    io = EmbodimentIO(embodiments["arm7"])
    goals = np.array([[0.0, 0.0, 0.0], [0.0, 0.03, 0.0], [0.3, 0.0, 0.1]] * 400, np.float32)
    stats = EmbodimentStats.from_data(io.names, embodiments["arm7"].layout.mask, [], [True] * io.size,
                                      rng.normal(size=(1200, io.size)), rng.normal(size=(1200, 4, io.size)), "tcp",
                                      goals, goal_in_tool=in_tool)
    normalization = Normalization(stats, 32)
    noise = goal_noise(normalization, torch.from_numpy(normalization.goal(goals)), torch.Generator().manual_seed(0))
    spread = [float(noise[k::3].std()) for k in range(3)]
    if in_tool:
        assert spread[0] == 0.0 and 0.2 * GOAL_NOISE < spread[1] < 0.4 * GOAL_NOISE, spread
    assert spread[2] == pytest.approx(GOAL_NOISE, rel=0.1), spread


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    arm7 = load_embodiment("arm7")
    out = tmp_path_factory.mktemp("episodes")
    collector = Collector(arm7)
    try:
        recorded = [collector.record("reach", seed, out, linger_s=0.3) for seed in range(3)]
    finally:
        collector.close()
    return arm7, [episode_samples(read_episode(r.path), arm7, 4, 0.1, (32, 32)) for r in recorded]


@pytest.fixture(scope="module")
def trained(episodes, tmp_path_factory):
    """A tiny model overfit on three episodes, saved as a checkpoint."""
    arm7, samples = episodes
    torch.manual_seed(0)
    model = VLA(model_config(samples, {"arm7": arm7}, 4, 0.1, TINY))
    settings = TrainSettings(steps=150, batch_size=16, learning_rate=3e-3, warmup=10, validate_every=50, shift=0)
    batches = Batches(samples, model.config, shared_encoder())
    optimizer = make_optimizer(model, settings)
    history = train(model, optimizer, batches, batches, settings)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny"
    save_checkpoint(path, model, optimizer, {"step": settings.steps})
    return model, history, path


def test_paraphrased_batches_word_a_frame_in_any_instruction_of_its_task_and_no_other(episodes, trained):
    """Two wordings of one task are drawn for the frames of both its episodes; another task's never."""
    arm7, samples = episodes
    model, _, _ = trained
    said_as = [("reach:red", "reach the red cube"), ("reach:red", "go to the red block"),
               ("reach:blue", "reach the blue cube")]
    worded = [dataclasses.replace(s, task=task, instructions=[words] * len(s))
              for s, (task, words) in zip(samples, said_as)]
    encoder = shared_encoder()
    texts = encoder.encode(["reach the red cube", "go to the red block", "reach the blue cube"])
    rows = np.arange(len(worded[0]))  # the first episode's frames
    rng = np.random.default_rng(0)
    drawn = Batches(worded, model.config, encoder, paraphrase=True).select("arm7", np.repeat(rows, 20), rng)["text"]
    said = [int(np.argmax(texts @ t.numpy())) for t in drawn]
    assert set(said) == {0, 1}, said
    recorded = Batches(worded, model.config, encoder).select("arm7", rows, rng)["text"]
    assert [int(np.argmax(texts @ t.numpy())) for t in recorded] == [0] * len(rows)


def registry_wordings(split: str, tasks=("reach", "pick", "pick_place", "stack"), colours=("red", "green", "blue")):
    """Task spec -> the registry's `split` phrasings of it, for every spec of `tasks` over `colours`."""
    wordings = {}
    for name in tasks:
        task = TASKS[name]
        for colour, other in itertools.permutations(colours, 2):
            values = {"colour": colour, "base": other, "receptacle": "tray"}
            spec = ":".join([name, *(values[p] for p in task.parameters)])
            wordings.setdefault(spec, set()).update(t.format(**values) for t in task.phrasings[split])
    return {spec: sorted(texts) for spec, texts in wordings.items()}


def test_the_reader_names_the_task_of_every_held_out_reach_pick_and_pick_place_wording():
    """Fitted on the train phrasings only; stacking's order (which cube goes on which) it cannot always tell."""
    train = registry_wordings("train")
    reader = InstructionReader(train, shared_encoder())
    held_out = registry_wordings("held_out", tasks=("reach", "pick", "pick_place"))
    misread = {text: reader.read(text).task for spec, texts in held_out.items() for text in texts
               if reader.read(text).task != spec}
    assert not misread, misread
    reading = reader.read("grasp the red cube and hold it up")
    assert reading.task == "pick:red" and reading.wording in train["pick:red"] and 0 < reading.probability <= 1
    assert reader.read("could you pile the red box on the blue box").task.startswith("stack:")
    with pytest.raises(VlaRosError, match="two or more tasks"):
        InstructionReader({"reach:red": ["reach the red cube"]}, shared_encoder())


def test_task_wordings_merge_known_ones_and_skip_episodes_whose_instruction_changed(episodes):
    _, samples = episodes
    said = [("reach:red", ["reach the red cube"]), ("reach:blue", ["go to the blue block", "now the red one"]),
            ("", ["touch the green cube"])]
    worded = [dataclasses.replace(s, task=task, instructions=[words[i * len(words) // len(s)] for i in range(len(s))])
              for s, (task, words) in zip(samples, said)]
    assert task_wordings(worded) == {"reach:red": ["reach the red cube"]}
    assert task_wordings(worded, {"reach:red": ["move to the red cube"], "pick:red": ["lift the red cube"]}) == {
        "pick:red": ["lift the red cube"], "reach:red": ["move to the red cube", "reach the red cube"]}


def test_the_builtin_backend_reads_an_instruction_as_a_task_it_knows(trained, episodes, tmp_path):
    """With the checkpoint's task wordings, unseen words drive the model as the task's typical wording does."""
    arm7, samples = episodes
    _, _, path = trained
    shutil.copytree(path, tmp_path / "reader")
    config = json.loads((tmp_path / "reader" / "config.json").read_text())
    config["instructions"] = registry_wordings("train", tasks=("reach", "pick"))
    (tmp_path / "reader" / "config.json").write_text(json.dumps(config))
    sample = samples[0]
    images = {c: np.repeat(np.repeat(f[0], 7, 0), 7, 1) for c, f in sample.images.items()}

    def chunk(policy, words):
        policy.reset()
        return policy.infer(Observation(images, sample.states[0], words, 0.0)).actions

    reading = make_policy("builtin", arm7, {"checkpoint": str(tmp_path / "reader")})
    assert reading.metadata["tasks"] == sorted(config["instructions"])
    held_out = chunk(reading, "grasp the blue cube and hold it up")
    assert "read 'grasp the blue cube and hold it up' as pick:blue" in reading.state
    np.testing.assert_array_equal(held_out, chunk(reading, reading.reader.typical["pick:blue"]))
    literal = make_policy("builtin", arm7, {"checkpoint": str(tmp_path / "reader"), "read_instructions": False})
    assert literal.reader is None and literal.metadata["tasks"] == []
    assert np.abs(chunk(literal, "grasp the blue cube and hold it up") - held_out).max() > 1e-4
    assert make_policy("builtin", arm7, {"checkpoint": str(path)}).reader is None  # a checkpoint without wordings


def test_the_loss_falls_on_a_handful_of_episodes(trained):
    _, history, _ = trained
    first, last = history.train[0][1], history.train[-1][1]
    assert last < 0.5 * first, history.train
    errors = [e for _, e in history.action_error]
    assert errors[-1] < errors[0]
    goal_errors = [e for _, e in history.goal_error]
    assert goal_errors[-1] < 0.5 * goal_errors[0], history.goal_error


def test_the_goal_token_steers_the_chunk_and_the_head_is_what_sampling_uses(trained, episodes):
    """The goal token steers the sampled chunk; without a goal, the head's prediction is used."""
    model, _, _ = trained
    arm7, samples = episodes
    stats = model.config.embodiments["arm7"]
    assert stats.goal_frame == "tcp" and len(stats.goal_mean) == 3
    normalization = Normalization(stats, model.config.width)
    sample = samples[0]
    images = {c: torch.from_numpy(f[:1]).permute(0, 3, 1, 2).float() / 255 for c, f in sample.images.items()}
    text = shared_encoder().encode(sample.instructions[:1])
    state = torch.from_numpy(normalization.state(sample.states[:1]))
    model.eval()
    with torch.no_grad():
        own, predicted = model.prefix(images, torch.from_numpy(text), state, "arm7")
        same, _ = model.prefix(images, torch.from_numpy(text), state, "arm7", predicted)
        moved, _ = model.prefix(images, torch.from_numpy(text), state, "arm7", predicted + 2.0)
    assert torch.allclose(own, same)
    mask = torch.from_numpy(normalization.mask.astype(np.float32))
    chunks = [model.sample(c, mask, 4, torch.Generator().manual_seed(0)) for c in (own, moved)]
    assert (chunks[0] - chunks[1]).abs().max() > 0.02


def test_a_checkpoint_round_trips_weights_config_and_samples(trained):
    model, _, path = trained
    loaded = load_checkpoint(path)
    assert loaded.config.to_json() == model.config.to_json()
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key
    context = torch.randn(1, 10, 32)
    mask = torch.ones(32)
    model.eval()
    first = model.sample(context, mask, 4, torch.Generator().manual_seed(5))
    second = loaded.sample(context, mask, 4, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    assert {"model.safetensors", "config.json", "optimizer.safetensors",
            "train_state.json"} <= {p.name for p in path.iterdir()}


def test_a_mismatched_checkpoint_fails_and_says_what_does_not_fit(trained, tmp_path):
    _, _, path = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    config = json.loads((path / "config.json").read_text())
    config["architecture"]["d_model"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"do not match config.json:\n.*shape \(4, 32\) in the file, \(4, 48\)"):
        load_checkpoint(broken)
    config["architecture"]["d_model"] = 32
    config["architecture"]["expert_layers"] = 2
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"expert.layers.1.*: missing"):
        load_checkpoint(broken)
    (broken / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="does not describe a vla_ros model"):
        load_checkpoint(broken)
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(tmp_path)
    (broken / "config.json").write_text((path / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read the weights"):
        load_checkpoint(broken)


def test_the_builtin_backend_refuses_an_embodiment_the_checkpoint_does_not_know(trained):
    _, _, path = trained
    with pytest.raises(PolicyError, match="was not trained on 'mobile_manipulator'.*knows arm7.*to add it.*"
                                          f"vla-ros train --init {path} --data"):
        make_policy("builtin", load_embodiment("mobile_manipulator"), {"checkpoint": str(path)})
    with pytest.raises(PolicyError, match="no checkpoint 'nowhere'"):
        make_policy("builtin", load_embodiment("arm7"), {"checkpoint": "nowhere"})


def test_a_checkpoint_grows_to_a_new_body_and_answers_for_the_old_one_as_before(trained, tmp_path):
    """Adding a body (with a camera the checkpoint never saw) keeps every old weight and old answer."""
    model, _, _ = trained
    humanoid = load_embodiment("humanoid_upper")
    collector = Collector(humanoid)
    try:
        recorded = collector.record("reach", 0, tmp_path, linger_s=0.3)
    finally:
        collector.close()
    samples = [episode_samples(read_episode(recorded.path), humanoid, 4, 0.1, (32, 32))]
    grown = add_embodiments(model, samples, {"humanoid_upper": humanoid}).eval()
    assert list(grown.config.embodiments) == ["arm7", "humanoid_upper"]
    assert grown.config.cameras == ["front", "wrist", "head"]
    assert grown.config.instructions == model.config.instructions

    def chunk(network, name, cameras):
        rng = np.random.default_rng(1)
        images = {c: torch.from_numpy(rng.random((1, 3, 32, 32), dtype=np.float32)) for c in cameras}
        text = torch.from_numpy(rng.normal(size=(1, 384)).astype(np.float32))
        state = torch.from_numpy(rng.normal(size=(1, 32)).astype(np.float32))
        context, goal = network.prefix(images, text, state, name)
        mask = torch.from_numpy(Normalization(network.config.embodiments[name], 32).mask.astype(np.float32))
        return network.sample(context, mask, 4, torch.Generator().manual_seed(0)), goal

    before, after = chunk(model, "arm7", ["front", "wrist"]), chunk(grown, "arm7", ["front", "wrist"])
    assert torch.allclose(before[0], after[0], atol=1e-5) and torch.allclose(before[1], after[1], atol=1e-5)
    actions, goal = chunk(grown, "humanoid_upper", ["head"])
    used = grown.config.embodiments["humanoid_upper"].mask
    assert goal.shape == (1, 3) and torch.all(actions[..., ~torch.tensor(used)] == 0)


def test_the_builtin_backend_answers_in_the_embodiment_layout_and_honours_the_prefix(trained, episodes):
    arm7, samples = episodes
    _, _, path = trained
    guided = make_policy("builtin", arm7, {"checkpoint": str(path)})
    free = make_policy("builtin", arm7, {"checkpoint": str(path), "guidance": False})
    sample = samples[0]
    observation = Observation({c: np.repeat(np.repeat(f[0], 7, 0), 7, 1) for c, f in sample.images.items()},
                              sample.states[0], sample.instructions[0], 12.5)
    chunk = guided.infer(observation)
    assert "goal (" in guided.state and "(tcp)" in guided.state
    assert chunk.actions.shape == (4, EmbodimentIO(arm7).size) and np.all(np.isfinite(chunk.actions))
    assert chunk.stamp == 12.5 and chunk.dt == pytest.approx(0.1)
    assert guided.metadata["cameras"] == {"front": [32, 32, 3], "wrist": [32, 32, 3]}
    assert guided.metadata["supports_prefix"] is True
    prefix = chunk.actions[:2] + 0.05
    np.testing.assert_allclose(guided.infer(observation, prefix).actions[:2], prefix, atol=1e-4)
    assert np.abs(free.infer(observation, prefix).actions[:2] - prefix).max() > 1e-3
    with pytest.raises(PolicyError, match="camera 'wrist'"):
        guided.infer(Observation({"front": observation.images["front"]}, sample.states[0], "x", 0.0))


@pytest.mark.parametrize("name", ("arm7", "ur5e", "mobile_manipulator", "humanoid_upper"))
def test_ee_actions_code_joint_targets_as_tool_motions_the_ik_follows_back(name):
    body = load_embodiment(name)
    io, coding = EmbodimentIO(body), EeCoding(body)
    arms = [g for g in body.commanded_groups if g.kind == "arm"]
    assert coding.names[:6 * len(arms)] == [f"{g.name}.{axis}" for g in arms for axis in EE_AXES]
    assert coding.mask(32) == [i < coding.width for i in range(32)]
    state = io.hold(np.zeros(io.size), 1)[0]
    for group in body.commanded_groups:
        state[[io.names.index(j) for j in group.joints]] = group.home if group.home is not None else 0.0
    steps = np.random.default_rng(0).normal(scale=0.01, size=(1, 8, io.size))
    targets = state + np.cumsum(steps, axis=1)
    values = coding.encode(targets, state[None])
    assert values.shape == (1, 8, coding.width)
    chunk = coding.chunk(values[0], state)
    followed = ChunkAdapter(body, ActionSpace("ee_pose")).targets(chunk, 0.05, state)
    for arm in arms:
        reached = [body.kinematics.frame_pose(io.joint_vector(q), arm.ee_frame)[:3, 3] for q in followed]
        meant = [body.kinematics.frame_pose(io.joint_vector(q), arm.ee_frame)[:3, 3] for q in targets[0]]
        np.testing.assert_allclose(reached, meant, atol=1e-4)
    for part in coding.parts:
        if part.kind in ("joints", "base"):
            np.testing.assert_allclose(followed[:, part.targets], targets[0][:, part.targets], atol=1e-5)


def test_an_ee_pose_model_answers_in_tool_poses_that_start_where_the_prefix_goes(episodes, tmp_path):
    arm7, samples = episodes
    coded = code_actions(samples, {"arm7": arm7}, "ee_pose")
    torch.manual_seed(0)
    model = VLA(model_config(coded, {"arm7": arm7}, 4, 0.1, TINY, "ee_pose"))
    stats = model.config.embodiments["arm7"]
    assert model.config.action_space == "ee_pose" and stats.action_names[-1] == "finger_joint"
    assert stats.names == list(EmbodimentIO(arm7).names) and sum(stats.action_mask) == 7
    settings = TrainSettings(steps=20, batch_size=8, warmup=2, validate_every=20, shift=0)
    batches = Batches(coded, model.config, shared_encoder())
    assert batches.parts["arm7"]["actions"].shape[-1] == 32
    optimizer = make_optimizer(model, settings)
    history = train(model, optimizer, batches, batches, settings)
    assert np.isfinite(history.validation[-1][1])
    save_checkpoint(tmp_path / "ee", model, optimizer, {"step": settings.steps})
    policy = make_policy("builtin", arm7, {"checkpoint": str(tmp_path / "ee")})
    assert policy.metadata["action_space"]["name"] == "ee_pose"
    sample = samples[0]
    images = {c: f[0] for c, f in sample.images.items()}
    observation = Observation(images, sample.states[0], sample.instructions[0], 1.0)
    chunk = policy.infer(observation)
    assert chunk.action_space.name == "ee_pose" and chunk.actions.shape == (4, 7)
    prefix = sample.actions[0][:2]
    guided = policy.infer(observation, prefix)
    tool = [arm7.kinematics.frame_pose(EmbodimentIO(arm7).joint_vector(q), "tcp")[:3, 3] for q in prefix]
    np.testing.assert_allclose(guided.actions[:2, :3], tool, atol=2e-3)


@pytest.mark.slow
def test_train_cli_writes_a_checkpoint_resumes_it_fine_tunes_it_and_is_seeded(episodes, tmp_path, capsys):
    data = tmp_path / "data"
    collector = Collector(load_embodiment("arm7"))
    try:
        for seed in (11, 12, 13):
            collector.record("reach", seed, data, linger_s=0.2)
    finally:
        collector.close()

    def train_cli(out, *extra):
        """`vla-ros train` in this process (the language model loaded once): its exit code and stderr."""
        code = main(["train", "--data", str(data), "--out", str(out), "--image-size", "32", "--batch-size", "4",
                     "--validate-every", "2", *extra])
        return code, capsys.readouterr().err

    assert train_cli(tmp_path / "a", "--steps", "2")[0] == 0
    assert {"model.safetensors", "config.json", "loss.png"} <= {p.name for p in (tmp_path / "a").iterdir()}
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["training"]["episodes"] == 3 and config["training"]["step"] == 2
    assert config["instructions"] and all(task.startswith("reach:") for task in config["instructions"])
    assert sorted(t for texts in config["instructions"].values() for t in texts) == config["training"]["instructions"]
    assert train_cli(tmp_path / "b", "--steps", "2")[0] == 0
    first, second = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("a", "b"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert train_cli(tmp_path / "a", "--steps", "4", "--resume", str(tmp_path / "a"))[0] == 0
    state = json.loads((tmp_path / "a" / "train_state.json").read_text())
    assert state["step"] == 4 and [s for s, _ in state["history"]["validation"]] == [2, 4]
    code, error = train_cli(tmp_path / "a", "--steps", "4", "--resume", str(tmp_path / "a"))
    assert code == 2 and "at step 4 already" in error

    assert train_cli(tmp_path / "c", "--steps", "2", "--image-size", "48", "--init", str(tmp_path / "a"))[0] == 0
    tuned = json.loads((tmp_path / "c" / "config.json").read_text())
    assert tuned["training"]["step"] == 2 and tuned["training"]["init"] == str(tmp_path / "a")
    assert tuned["architecture"] == config["architecture"] and tuned["embodiments"] == config["embodiments"]
    base = load_file(str(tmp_path / "a" / "model.safetensors"))
    third = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert any(not torch.equal(base[k], third[k]) for k in base)

    assert train_cli(tmp_path / "e", "--steps", "2", "--action-space", "ee_pose")[0] == 0
    assert json.loads((tmp_path / "e" / "config.json").read_text())["embodiments"]["arm7"]["action_space"] == "ee_pose"
    code, error = train_cli(tmp_path / "f", "--steps", "2", "--init", str(tmp_path / "e"), "--action-space",
                            "joint_position")
    assert code == 2 and "learned ee_pose; it keeps it" in error
