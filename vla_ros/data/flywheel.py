"""Training samples from deployment: what a person did, what the robot did, what was said, how it ended.

An episode recorded by recorder_node while a policy drove (its outcome lists `interventions`) is
cut into pieces, each a run of its samples under one instruction and one task (so the model's
instruction reader learns the pieces' words as their task's), from four sources, each switched on
by name for ablations:

- `interventions`: the samples whose whole action window lies inside a segment a person drove,
  SETTLE_S after it began (the controller first brings the policy's motion to rest): the robot's
  own states with the person's actions, under the instruction in force.
- `relabel` (hindsight): where the policy drove and the tool first stayed at a cube other than the
  reach instruction's (within REACH_RADIUS for REACH_HOLD_S, as the reach task judges success; the
  cubes as sim/objects reported them), the policy's samples of that stretch up to then are a
  correct example of reaching the cube it reached, worded as the reach task's training instruction
  for it. None of them keeps the instruction it failed. A stretch that reached the asked-for cube
  first is not relabelled.
- `corrections`: after each correction, until the next one, the samples that are a person's, or the
  policy's good ones (below), worded as the correction itself; its task is the episode's with the
  colour the correction names.
- `outcomes`: the policy's good samples: those of an episode labelled a success, after the last
  time a person handed back (what led to a takeover was not good); a failure's are left out.

Only reach is relabelled (what "reached" means for the other tasks is left for later).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from vla_ros.data.bag import Episode
from vla_ros.data.dataset import EpisodeSamples, with_goals
from vla_ros.embodiment import Embodiment, EmbodimentIO
from vla_ros.embodiment.goals import goal_frames
from vla_ros.errors import VlaRosError, did_you_mean
from vla_ros.sim.tasks import REACH_HOLD_S, REACH_RADIUS, TASKS, read_instruction
from vla_ros.sim.world import COLOURS

SOURCES = ("interventions", "relabel", "corrections", "outcomes")
SETTLE_S = 0.2  # [s] after a takeover: the policy's motion braking, then the person's first chunk


def parse_sources(text: str) -> tuple[str, ...]:
    """Comma-separated source names ("all": every one) -> a tuple; VlaRosError naming an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return SOURCES
    for name in names:
        if name not in SOURCES:
            raise VlaRosError(f"no flywheel source {name!r}{did_you_mean(name, SOURCES)}; sources: "
                              f"{', '.join(SOURCES)} (or all)")
    return tuple(dict.fromkeys(names))


def is_deployment(info: dict[str, str]) -> bool:
    """Whether a recording's metadata says recorder_node recorded it while a policy could be taken over."""
    return "outcome.interventions" in info


def deployment_pieces(episode: Episode, samples: EpisodeSamples, embodiment: Embodiment, horizon: int, dt: float,
                      sources: tuple[str, ...]) -> list[EpisodeSamples]:
    """The pieces of a deployment episode's samples the `sources` make (see the module docstring)."""
    times = samples.times
    ends = times + horizon * dt
    driven = np.zeros(len(times), bool)  # the whole action window inside one intervention
    touched = np.zeros(len(times), bool)  # the action window overlaps one
    for start, end in episode.interventions:
        driven |= (times >= start + SETTLE_S) & (ends <= end)
        touched |= (times < end) & (ends > start)
    own = ~touched
    handed_back = max((end for _, end in episode.interventions), default=-np.inf)
    instruction = samples.instructions[0] if samples.instructions else ""
    spec = read_instruction(instruction) or samples.task
    success = bool((episode.outcome or {}).get("success"))
    good = own & success & (times >= handed_back)
    pieces = []
    if "interventions" in sources:
        pieces.append(_piece(samples, driven, instruction, spec, embodiment))
    if "outcomes" in sources:
        pieces.append(_piece(samples, good, instruction, spec, embodiment))
    if "relabel" in sources and spec and spec.startswith("reach:"):
        for colour, chosen in _reached_elsewhere(episode, samples, embodiment, own, spec.split(":")[1]):
            pieces.append(_piece(samples, chosen, TASKS["reach"].phrasings["train"][0].format(colour=colour),
                                 f"reach:{colour}", embodiment))
    if "corrections" in sources:
        moments = [t for t, _ in episode.corrections] + [np.inf]
        for (said, text), until in zip(episode.corrections, moments[1:]):
            named = _colour(text)
            task = spec if named is None or not spec else ":".join([spec.split(":")[0], named, *spec.split(":")[2:]])
            pieces.append(_piece(samples, (driven | good) & (times >= said) & (times < until), text, task,
                                 embodiment))
    return [piece for piece in pieces if len(piece)]


def _piece(samples: EpisodeSamples, chosen: np.ndarray, instruction: str, task: str,
           embodiment: Embodiment) -> EpisodeSamples:
    """The `chosen` samples, all under `instruction` and `task`, a success, with their own hindsight goals."""
    index = np.flatnonzero(chosen)
    return with_goals(replace(
        samples, images={name: frames[index] for name, frames in samples.images.items()}, states=samples.states[index],
        actions=samples.actions[index], instructions=[instruction] * len(index), success=True, task=task,
        times=samples.times[index], goals=None, tool_goals=None), embodiment)


def _colour(text: str) -> str | None:
    """The one cube colour `text` names, or None (no colour, or several)."""
    words = set(text.lower().replace(",", " ").replace(".", " ").split())
    named = [colour for colour in COLOURS if colour in words]
    return named[0] if len(named) == 1 else None


def _reached_elsewhere(episode: Episode, samples: EpisodeSamples, embodiment: Embodiment, own: np.ndarray,
                       target: str) -> list[tuple[str, np.ndarray]]:
    """(colour, samples) for each stretch the policy drove that came to rest at a cube other than `target`.

    The samples are the stretch's from its start up to the end of the dwell.
    """
    cubes = {name.removesuffix("_cube"): series for name, series in episode.objects.items() if name.endswith("_cube")}
    frames = goal_frames(embodiment)
    if not cubes or not frames or not np.any(own):
        return []
    io = EmbodimentIO(embodiment)
    kinematics = embodiment.kinematics
    times = samples.times
    tools = np.array([[kinematics.frame_pose(io.joint_vector(state), frame)[:3, 3] for frame in frames]
                      for state in samples.states])  # (N, frames, 3)
    found = []
    for stretch in _runs(own):
        dwells = {}
        for colour, series in cubes.items():
            at = np.stack([np.interp(times[stretch], series.times, series.values[:, k]) for k in range(3)], axis=1)
            near = np.min(np.linalg.norm(tools[stretch] - at[:, None, :], axis=2), axis=1) < REACH_RADIUS
            dwell = _first_dwell(times[stretch], near)
            if dwell is not None:
                dwells[colour] = dwell
        if dwells:
            colour, dwell = min(dwells.items(), key=lambda item: item[1])  # the cube it stayed at first
            if colour != target:
                chosen = np.zeros(len(times), bool)
                chosen[stretch[: dwell + 1]] = True
                found.append((colour, chosen))
    return found


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the maximal runs of True in `mask`."""
    index = np.flatnonzero(mask)
    return [run for run in np.split(index, np.flatnonzero(np.diff(index) > 1) + 1) if len(run)]


def _first_dwell(times: np.ndarray, near: np.ndarray) -> int | None:
    """Position of the first sample by which `near` has held for REACH_HOLD_S, or None."""
    since = None
    for k, (t, inside) in enumerate(zip(times, near)):
        if not inside:
            since = None
            continue
        since = t if since is None else since
        if t - since >= REACH_HOLD_S:
            return k
    return None
