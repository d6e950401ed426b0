"""Training the built-in VLA on episode samples: batches, the loop, validation, the loss plot.

Batches come from one embodiment at a time (chosen in proportion to its samples), so each batch
has one set of cameras and one action layout. Images get a random shift of a few pixels (the
usual augmentation for behaviour cloning from pixels). The first frames of each episode are drawn
`EARLY_WEIGHT` times as often: there only the instruction says where to go, while later frames
also show where the arm is heading, and a model that learns to continue the motion it sees
instead of reading the instruction (the "copycat" failure of behaviour cloning) picks a target
at random. The goal head (vla_ros.model.network) learns from the demonstration's hindsight goal
(seen from the end effector: where the arm must go next relative to where it is, which the wrist
camera shows) beside the flow-matching loss; the goal token is fed that goal plus noise, fading
out near a goal seen from the tool. Everything random
draws from generators seeded by `TrainSettings.seed`; a resumed run continues the step count, the learning-rate
schedule and the optimizer moments.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from vla_ros.data.dataset import EpisodeSamples, sample_goals
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.goals import goal_frame
from vla_ros.model.config import Architecture, EmbodimentStats, ModelConfig
from vla_ros.model.ee_actions import EE_POSE, JOINT, EeCoding
from vla_ros.model.language import LanguageEncoder
from vla_ros.model.network import VLA
from vla_ros.model.normalization import Normalization

EARLY_FRAMES = 4  # the first frames of an episode (0.4 s at 10 Hz) ...
EARLY_WEIGHT = 8.0  # ... are drawn this many times as often as the others (about 60% of the draws)
GOAL_WEIGHT = 1.0  # of the goal head's squared error (normalised) beside the flow-matching loss
GOAL_NOISE = 0.1  # std of the noise on the demonstration's goal fed to the goal token (normalised units) ...
GOAL_NOISE_RANGE_M = 0.1  # ... fading linearly to 0 within this distance of a tool-frame goal

@dataclass
class TrainSettings:
    """How long and how to train: steps, batch, optimiser, seed, validation, augmentation."""

    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    seed: int = 0
    validate_every: int = 250
    shift: int = 4  # [px] random image shift
    paraphrase: bool = False  # a drawn frame's instruction: any wording the data has of its task (`Batches`)


@dataclass
class History:
    """Loss curves: (step, value) pairs."""

    train: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    action_error: list[tuple[int, float]] = field(default_factory=list)  # [rad | m] of sampled chunks
    goal_error: list[tuple[int, float]] = field(default_factory=list)  # [m] mean distance of predicted goals


def task_wordings(samples: list[EpisodeSamples], known: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Task -> the instructions of its episodes (merged into `known`), for the instruction reader.

    Only episodes with a task and one instruction count: one whose instruction changed partway
    (collect --switch) is filed under one task with the words of two.
    """
    wordings = {task: set(texts) for task, texts in (known or {}).items()}
    for s in samples:
        if s.task and len(set(s.instructions)) == 1:
            wordings.setdefault(s.task, set()).add(s.instructions[0])
    return {task: sorted(texts) for task, texts in sorted(wordings.items())}


def model_config(samples: list[EpisodeSamples], embodiments: dict[str, Embodiment], horizon: int, dt: float,
                 architecture: Architecture, action_space: str = JOINT) -> ModelConfig:
    """A config whose per-embodiment statistics come from `samples` (the training split).

    With `action_space` ee_pose, the samples' actions are already coded (ee_actions.code_actions).
    """
    stats, cameras, widths = {}, [], set()
    for name, embodiment in embodiments.items():
        mine = [s for s in samples if s.embodiment == name]
        io = EmbodimentIO(embodiment)
        relative, columns = [n in io.joints for n in io.names], {}
        if action_space == EE_POSE:
            coding = EeCoding(embodiment)
            relative = [False] * coding.width
            columns = dict(action_space=EE_POSE, action_names=coding.names,
                           action_mask=coding.mask(embodiment.layout.width))
        frame = goal_frame(embodiment)
        goals = sample_goals(mine, in_tool=True) if frame else None
        stats[name] = EmbodimentStats.from_data(
            io.names, embodiment.layout.mask, list(embodiment.cameras), relative,
            np.concatenate([s.states for s in mine]), np.concatenate([s.actions for s in mine]), frame, goals,
            goal_in_tool=True, **columns)
        cameras += [c for c in embodiment.cameras if c not in cameras]
        widths.add(embodiment.layout.width)
    if len(widths) != 1:
        raise ValueError(f"embodiments with different action widths {sorted(widths)} cannot share a model")
    return ModelConfig(architecture=architecture, width=widths.pop(), horizon=horizon, dt=dt, cameras=cameras,
                       embodiments=stats)


def add_embodiments(model: VLA, samples: list[EpisodeSamples], embodiments: dict[str, Embodiment]) -> VLA:
    """`model` extended to the `embodiments` it does not know yet (statistics from `samples`), weights kept.

    Fine-tuning onto a new body: every trained weight carries over. A new embodiment's token and a
    new camera's embedding start at the mean of the ones trained (a body like the others, seen
    through a camera like the others); the goal head reads a new camera's keypoints through
    columns that start at zero, so it begins as it was, with those cameras absent.
    """
    config = model.config
    new = {name: body for name, body in embodiments.items() if name not in config.embodiments}
    if not new:
        return model
    grown = model_config(samples, new, config.horizon, config.dt, config.architecture, config.action_space)
    if grown.width != config.width:
        raise ValueError(f"{', '.join(new)}: action width {grown.width}, the checkpoint's is {config.width}")
    cameras = config.cameras + [c for c in grown.cameras if c not in config.cameras]
    extended = VLA(ModelConfig(architecture=config.architecture, width=config.width, horizon=config.horizon,
                               dt=config.dt, cameras=cameras, embodiments={**config.embodiments, **grown.embodiments},
                               instructions=dict(config.instructions), training=dict(config.training)))
    old, weights = model.state_dict(), extended.state_dict()
    for key in ("embodiment_embedding.weight", "camera_embedding.weight"):
        rows = old[key]
        weights[key][:len(rows)] = rows
        weights[key][len(rows):] = rows.mean(0)
    points = 2 * config.architecture.keypoints
    first = old["goal_head.0.weight"]  # (256, cameras * 2K + width): keypoints of each camera, then the state
    widened = torch.zeros_like(weights["goal_head.0.weight"])
    widened[:, :len(config.cameras) * points] = first[:, :len(config.cameras) * points]
    widened[:, len(cameras) * points:] = first[:, len(config.cameras) * points:]
    weights["goal_head.0.weight"] = widened
    for key, tensor in old.items():
        if key not in ("embodiment_embedding.weight", "camera_embedding.weight", "goal_head.0.weight"):
            weights[key] = tensor
    extended.load_state_dict(weights)
    return extended


def code_actions(samples: list[EpisodeSamples], embodiments: dict[str, Embodiment],
                 action_space: str) -> list[EpisodeSamples]:
    """`samples` with their actions as `action_space` has the model learn them (as they are for joint_position)."""
    if action_space == JOINT:
        return samples
    codings = {name: EeCoding(body) for name, body in embodiments.items()}
    return [replace(s, actions=codings[s.embodiment].encode(s.actions, s.states)) for s in samples]


class Batches:
    """The samples of a split held as arrays per embodiment, served as random batches.

    With `paraphrase`, a randomly drawn frame is worded in any of the instructions the split has for
    its episode's task (`pick:red`: "lift the red cube", "pick the red block up", ...), not only
    the one it was recorded with: each phrasing is seen with every scene of its task.
    """

    def __init__(self, samples: list[EpisodeSamples], config: ModelConfig, encoder: LanguageEncoder,
                 paraphrase: bool = False):
        self.config = config
        texts = sorted({t for s in samples for t in s.instructions})
        self.text = torch.from_numpy(encoder.encode(texts)) if texts else torch.zeros(0, config.architecture.text_dim)
        index = {t: i for i, t in enumerate(texts)}
        wordings: dict[str, set[int]] = {}  # an episode's frames all say its task: the task spec, else the words
        for s in samples:
            for t in s.instructions:
                wordings.setdefault(s.task or t, set()).add(index[t])
        meaning_of = {meaning: i for i, meaning in enumerate(wordings)}
        self.wordings = [np.array(sorted(w)) for w in wordings.values()] if paraphrase else []
        self.parts = {}
        for name, stats in config.embodiments.items():
            mine = [s for s in samples if s.embodiment == name and len(s)]
            if not mine:
                continue
            normalization = Normalization(stats, config.width)
            states = np.concatenate([s.states for s in mine])
            actions = np.concatenate([s.actions for s in mine])
            self.parts[name] = {
                "images": {c: np.concatenate([s.images[c] for s in mine]) for c in stats.cameras},
                "state": torch.from_numpy(normalization.state(states)),
                "actions": torch.from_numpy(normalization.actions(actions, states)),
                "text": torch.tensor([index[t] for s in mine for t in s.instructions]),
                "meaning": np.array([meaning_of[s.task or t] for s in mine for t in s.instructions], dtype=int),
                "mask": torch.from_numpy(normalization.mask.copy()),
                "goal": torch.from_numpy(normalization.goal(sample_goals(mine, stats.goal_in_tool)))
                if normalization.has_goal else None,
                "raw_states": states, "raw_actions": actions, "normalization": normalization,
                "weights": np.concatenate([np.where(np.arange(len(s)) < EARLY_FRAMES, EARLY_WEIGHT,
                                                    1.0) for s in mine]),
            }
            self.parts[name]["weights"] /= self.parts[name]["weights"].sum()
        self.sizes = {name: len(part["state"]) for name, part in self.parts.items()}

    def __len__(self) -> int:
        return sum(self.sizes.values())

    def draw(self, rng: np.random.Generator, size: int, shift: int) -> tuple[str, dict]:
        names = list(self.sizes)
        weights = np.array([self.sizes[n] for n in names], dtype=float)
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        rows = rng.choice(self.sizes[name], size, p=self.parts[name]["weights"])
        return name, self.select(name, rows, rng, shift)

    def select(self, name: str, rows: np.ndarray, rng: np.random.Generator | None = None, shift: int = 0) -> dict:
        part = self.parts[name]
        images = {c: _to_tensor(frames[rows], rng, shift) for c, frames in part["images"].items()}
        text = part["text"][rows]
        if rng is not None and self.wordings:
            text = torch.tensor([int(rng.choice(self.wordings[m])) for m in part["meaning"][rows]])
        return {"images": images, "text": self.text[text], "state": part["state"][rows],
                "actions": part["actions"][rows], "mask": part["mask"],
                "goal": None if part["goal"] is None else part["goal"][rows]}


def _to_tensor(frames: np.ndarray, rng: np.random.Generator | None, shift: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1], each randomly shifted by up to `shift` px."""
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous().float() / 255.0
    if rng is None or shift == 0:
        return pixels
    batch, _, height, width = pixels.shape
    padded = torch.nn.functional.pad(pixels, (shift, shift, shift, shift), mode="replicate")
    offsets = rng.integers(0, 2 * shift + 1, (batch, 2))
    return torch.stack([padded[i, :, y:y + height, x:x + width] for i, (y, x) in enumerate(offsets)])


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < settings.warmup:
        return settings.learning_rate * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(settings.steps - settings.warmup, 1)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def make_optimizer(model: VLA, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)


def goal_noise(normalization: Normalization, goal: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3) noise for normalised goals (B, 3) fed to the goal token.

    The noise stands in for the head's error, so the action expert does not follow the goal token
    blindly far away. A goal seen from the tool fades it out within GOAL_NOISE_RANGE_M: there the
    action expert must learn to go exactly where the token says (the last centimetres to a grasp,
    which the head predicts to ~1.3 cm), not to treat a small offset as noise and stay beside the cube.
    """
    noise = GOAL_NOISE * torch.randn(goal.shape, generator=generator)
    if not normalization.goal_in_tool:
        return noise
    distance = np.linalg.norm(normalization.goal_metres(goal.numpy()), axis=1)
    return noise * torch.from_numpy(np.minimum(distance / GOAL_NOISE_RANGE_M, 1.0).astype(np.float32))[:, None]


def goal_loss(predicted: torch.Tensor | None, goal: torch.Tensor | None) -> torch.Tensor:
    """The goal head's mean squared error (normalised units); 0 for an embodiment without goals."""
    if predicted is None or goal is None:
        return torch.zeros(())
    return ((predicted - goal) ** 2).mean()


@torch.no_grad()
def validate(model: VLA, batches: Batches, seed: int, limit: int = 256) -> tuple[float, float, float]:
    """(flow-matching loss, mean |error| of sampled chunks [rad | m], mean goal distance [m]).

    The goal distance is nan without goals. On up to `limit` samples per embodiment, sampled as the
    policy does (from the predicted goal), with fixed noise so successive validations compare.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    losses, errors, distances = [], [], []
    for name, size in batches.sizes.items():
        rows = np.linspace(0, size - 1, min(size, limit)).astype(int)
        for start in range(0, len(rows), 64):
            chosen = rows[start:start + 64]
            batch = batches.select(name, chosen)
            context, predicted = model.prefix(batch["images"], batch["text"], batch["state"], name)
            losses.append(float(model.loss(context, batch["actions"], batch["mask"], generator)) * len(chosen))
            sampled = model.sample(context, batch["mask"].float(), model.config.architecture.denoising_steps, generator)
            part = batches.parts[name]
            normalization = part["normalization"]
            actions = normalization.unnormalize(sampled.numpy(), part["raw_states"][chosen])
            errors.append(float(np.abs(actions - part["raw_actions"][chosen]).mean()) * len(chosen))
            if predicted is not None:
                metres = normalization.goal_metres(predicted.numpy()) - normalization.goal_metres(batch["goal"].numpy())
                distances += np.linalg.norm(metres, axis=1).tolist()
    model.train()
    count = sum(min(size, limit) for size in batches.sizes.values())
    return sum(losses) / count, sum(errors) / count, float(np.mean(distances)) if distances else float("nan")


def train(model: VLA, optimizer: torch.optim.Optimizer, training: Batches, validation: Batches | None,
          settings: TrainSettings, start_step: int = 0, history: History | None = None,
          on_step: Callable[[int, float], None] | None = None,
          on_validation: Callable[[int, float, float, float], None] | None = None,
          on_checkpoint: Callable[[int, History], None] | None = None) -> History:
    """Train from `start_step` to `settings.steps`; validates and checkpoints every `validate_every` steps."""
    history = history or History()
    rng = np.random.default_rng([settings.seed, start_step])
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + start_step)
    model.train()
    smoothed = None
    for step in range(start_step, settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        name, batch = training.draw(rng, settings.batch_size, settings.shift)
        goal = batch["goal"]
        fed = None if goal is None else goal + goal_noise(training.parts[name]["normalization"], goal, generator)
        context, predicted = model.prefix(batch["images"], batch["text"], batch["state"], name, fed)
        loss = model.loss(context, batch["actions"], batch["mask"], generator) + GOAL_WEIGHT * goal_loss(predicted,
                                                                                                         goal)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        value = loss.item()
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        if step % 10 == 0:
            history.train.append((step, smoothed))
        if on_step is not None:
            on_step(step + 1, smoothed)
        last = step + 1 == settings.steps
        if (step + 1) % settings.validate_every == 0 or last:
            if validation is not None and len(validation):
                val_loss, error, goal_error = validate(model, validation, settings.seed)
                history.validation.append((step + 1, val_loss))
                history.action_error.append((step + 1, error))
                history.goal_error.append((step + 1, goal_error))
                if on_validation is not None:
                    on_validation(step + 1, val_loss, error, goal_error)
            if on_checkpoint is not None:
                on_checkpoint(step + 1, history)
    return history


def history_to_json(history: History) -> dict:
    return asdict(history)


def history_from_json(data: dict) -> History:
    return History(**{k: [tuple(v) for v in values] for k, values in data.items()})


def plot_losses(history: History, path, title: str) -> None:
    """Training loss (smoothed), validation loss, sampled-chunk and goal errors against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if history.train:
        left.plot(*zip(*history.train), label="training (smoothed)")
    if history.validation:
        left.plot(*zip(*history.validation), "o-", label="validation")
    left.set(xlabel="step", ylabel="flow-matching loss", yscale="log", title=title)
    left.legend()
    if history.action_error:
        right.plot(*zip(*history.action_error), "o-", color="tab:green")
    right.set(xlabel="step", ylabel="mean |action error| [rad]", title="validation: sampled chunks vs demonstrations")
    goals = [(step, value) for step, value in history.goal_error if math.isfinite(value)]
    if goals:
        metres = right.twinx()
        metres.plot(*zip(*goals), "s--", color="tab:purple")
        metres.set_ylabel("mean goal error [m] (dashed)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
