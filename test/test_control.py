"""The control core: chunk validation, the timeline's strategies, the limiter, the control laws, the controller."""
import dataclasses
import time

import mujoco
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vla_ros.control.chunk import BaseChunk, ChunkRejected, JointChunk
from vla_ros.control.controller import (
    BASE_PERIOD_S,
    ESTOP,
    HOLDING,
    RUNNING,
    STALE,
    WAITING,
    Controller,
    ControllerConfig,
)
from vla_ros.control.limits import MotionLimiter
from vla_ros.control.pd import CommandLaw, desired_acceleration, group_command, wrap_to_pi
from vla_ros.control.rate import PreciseRate
from vla_ros.control.timeline import Timeline
from vla_ros.embodiment import load_embodiment
from vla_ros.sim.episode import step
from vla_ros.sim.hardware import SimHardware
from vla_ros.sim.world import World

ARM7 = load_embodiment("arm7")
DT = 0.002


def arm7_controller(**config) -> Controller:
    return Controller(ARM7, ControllerConfig(**config))


def home_state():
    q = np.zeros(len(ARM7.kinematics.joint_names))
    for group in ARM7.commanded_groups:
        q[ARM7.kinematics.index(group.joints)] = group.home
    return q


def step_at_home(controller: Controller, now: float = 0.0):
    """One control period at `now` with the arm measured at home, at rest."""
    controller.update_state(home_state(), np.zeros_like(home_state()), now)
    return controller.step(now, DT)


def smooth_chunk(controller, stamp, horizon=0.5, points=10, offset=0.1) -> JointChunk:
    """A smooth chunk moving every commanded joint by `offset` from home over `horizon` s."""
    home = np.concatenate([g.home for g in controller.groups])
    times = np.linspace(horizon / points, horizon, points)
    positions = home + np.outer(times / horizon, np.full(len(home), offset))
    positions[:, -1] = np.clip(positions[:, -1], 0.0, 0.04)
    return JointChunk(stamp, tuple(controller.joints), times, positions)


# -- chunks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, reason", [
    (dict(joints=["a", "a"]), "appear more than once"),
    (dict(positions=[[0, 0, 0], [1, 1, 1]]), "3 positions for 2 joints"),
    (dict(positions=[[0, 0], [1]]), "different numbers of positions"),
    (dict(positions=[[0, 0]]), "do not make 2 points"),
    (dict(positions=[[0, np.nan], [1, 1]]), "non-finite positions"),
    (dict(velocities=[[0, np.inf], [1, 1]]), "non-finite velocities"),
    (dict(velocities=[[0, 0]]), "rows of velocities do not make 2 points"),
    (dict(times=[0.2, 0.2]), "strictly increasing"),
    (dict(times=[-0.1, 0.2]), "strictly increasing"),
    (dict(times=[], positions=[]), "no points"),
    (dict(joints=[]), "no joint names"),
    (dict(stamp=np.nan), "non-finite times or stamp"),
])
def test_malformed_chunks_are_rejected_with_the_reason(overrides, reason):
    """A chunk as a message carries it (per-point rows) is refused whole, saying what is wrong."""
    args = dict(stamp=10.0, joints=["a", "b"], times=[0.1, 0.2], positions=[[0, 0], [1, 1]], velocities=())
    args.update(overrides)
    with pytest.raises(ChunkRejected) as rejected:
        JointChunk.from_points(**args)
    assert reason in rejected.value.reason


def rejection(controller: Controller, chunk: JointChunk, now: float) -> str:
    with pytest.raises(ChunkRejected) as rejected:
        controller.submit(chunk, now)
    return rejected.value.reason


def test_chunks_that_do_not_fit_the_robot_or_the_moment_are_rejected_and_counted():
    """Unknown or delegated joints, an old observation, one from the future, every point past."""
    controller = arm7_controller(max_chunk_age_s=0.5)
    step_at_home(controller, 10.0)
    chunk = smooth_chunk(controller, 10.0)
    unknown = JointChunk(10.0, (*controller.joints[:-1], "elbow"), chunk.times, chunk.positions)
    assert "unknown joint 'elbow'" in rejection(controller, unknown, 10.05)
    assert "observation is 1.050 s old" in rejection(controller, smooth_chunk(controller, 9.0), 10.05)
    assert "in the future" in rejection(controller, smooth_chunk(controller, 11.0), 10.05)
    assert "every point is in the past" in rejection(controller, smooth_chunk(controller, 9.8, horizon=0.2), 10.05)
    assert controller.stats.chunks_rejected == 4 and controller.stats.chunks_accepted == 0
    humanoid = load_embodiment("humanoid_upper")
    legs = Controller(humanoid, ControllerConfig())
    q = np.zeros(len(humanoid.kinematics.joint_names))
    legs.update_state(q, q, 0.0)
    legs.step(0.0, DT)
    leg = humanoid.delegated_groups[0].joints[0]
    assert f"joint {leg!r} is delegated" in rejection(legs, JointChunk(0.0, (leg,), [0.1], [[0.0]]), 0.0)


def test_points_already_past_are_dropped_on_arrival():
    controller = arm7_controller()
    step_at_home(controller, 10.0)
    chunk = smooth_chunk(controller, 10.0, horizon=0.3, points=3)
    taken = controller.submit(chunk, 10.15)
    assert list(taken.times) == pytest.approx([0.2, 0.3]) and np.array_equal(taken.positions, chunk.positions[1:])


# -- timeline -------------------------------------------------------------------------------
def run_timeline(strategy, chunks, until=1.5, dt=0.001):
    """Sample a 1-joint timeline while chunks arrive; returns times, q, qd."""
    timeline = Timeline(1, strategy, blend_s=0.1)
    timeline.reset(np.zeros(1))
    pending = sorted(chunks, key=lambda c: c[0])
    out = []
    for t in np.arange(0.0, until, dt):
        while pending and pending[0][0] <= t:
            arrival, stamp, times, positions = pending.pop(0)
            timeline.add(JointChunk(stamp, ("j",), times, positions).after(arrival), np.array([0]), arrival)
        q, v = timeline.sample(t)
        out.append((t, q[0], v[0]))
    return np.array(out).T


def ramp_chunks(lag=0.08):
    """A target moving at 1 rad/s, in chunks computed from observations `lag` s old.

    Each chunk starts where its observation was: behind where the previous chunk had got to.
    """
    chunks = []
    for arrival in np.arange(0.2, 1.2, 0.2):
        stamp = arrival - lag
        times = np.linspace(0.05, 0.5, 10)
        positions = (stamp - 0.03 + times)[:, None]  # its model lags the truth by 30 ms
        chunks.append((arrival, stamp, times, positions))
    return chunks


def test_splice_keeps_position_and_velocity_continuous_where_replace_jumps():
    """Across chunk arrivals, splice's targets change by O(dt) per step; replace's jump.

    Measured from the second arrival to the last: the first chunk starts the motion from rest and
    the last one stops it, both the limiter's job.
    """
    jumps = {}
    for strategy in ("splice", "replace"):
        t, q, v = run_timeline(strategy, ramp_chunks())
        later = (t[1:] > 0.35) & (t[1:] < 1.1)  # chunk arrivals, before the last one runs out
        jumps[strategy] = (np.max(np.abs(np.diff(q))[later]), np.max(np.abs(np.diff(v))[later]))
    assert jumps["splice"][0] < 0.003, "position moves about 1 rad/s * 1 ms per step"
    assert jumps["replace"][0] > 3 * jumps["splice"][0]
    assert jumps["splice"][1] < jumps["replace"][1]


def test_no_stop_at_chunk_ends_when_the_next_chunk_covers_the_time():
    """Back-to-back chunks: the target velocity never drops to zero between them."""
    t, q, v = run_timeline("splice", ramp_chunks(lag=0.0))
    moving = (t > 0.35) & (t < 1.15)
    assert v[moving].min() > 0.5


def test_targets_hold_after_the_last_chunk_ends():
    t, q, v = run_timeline("splice", ramp_chunks()[:1], until=1.5)
    after = t > 0.2 + 0.5
    assert np.allclose(q[after], q[after][0]) and np.all(v[after] == 0)


def test_ensemble_averages_overlapping_chunks():
    """Two chunks asking for 0 and 1 over the same span: the ensemble lands in between, nearer the older."""
    chunks = [(0.1, 0.1, np.array([0.1, 0.5]), np.array([[0.0], [0.0]])),
              (0.2, 0.2, np.array([0.05, 0.4]), np.array([[1.0], [1.0]]))]
    t, q, _ = run_timeline("ensemble", chunks, until=0.5)
    both = (t > 0.3) & (t < 0.55)
    assert np.all((q[both] > 0.2) & (q[both] < 0.5))


# -- limiter -----------------------------------------------------------------------------------
limits = dict(lower=np.array([-1.0, -np.inf]), upper=np.array([1.0, np.inf]), velocity=np.array([2.0, 3.0]),
              acceleration=np.array([10.0, 20.0]), margin=np.array([0.05, 0.0]), continuous=np.array([False, True]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.floats(-50, 50), st.floats(-50, 50)),
                min_size=1, max_size=300))
def test_limiter_never_leaves_limits_whatever_the_targets(targets):
    """Any (finite) target sequence: |qd| <= v_max, |dqd| <= a_max dt, q within URDF limits."""
    limiter = MotionLimiter(**limits)
    limiter.reset(np.zeros(2))
    previous = np.zeros(2)
    for q0, q1, v0, v1 in targets:
        q, qd = limiter.step(np.array([q0, q1]), np.array([v0, v1]), DT)
        assert np.all(np.abs(qd) <= limits["velocity"] + 1e-12)
        assert np.all(np.abs(qd - previous) <= limits["acceleration"] * DT + 1e-9)
        assert -1.0 <= q[0] <= 1.0
        previous = qd


def test_limiter_settles_on_a_step_without_overshoot():
    limiter = MotionLimiter(**limits)
    limiter.reset(np.zeros(2))
    trace = [limiter.step(np.array([0.5, 3.0]), np.zeros(2), DT)[0] for _ in range(2000)]
    trace = np.array(trace)
    assert trace[-1] == pytest.approx([0.5, wrap_to_pi(3.0)], abs=1e-3) or trace[-1][1] == pytest.approx(3.0, abs=1e-3)
    assert trace[:, 0].max() <= 0.5 + 1e-3, "no overshoot past the target"


def test_limiter_keeps_targets_inside_the_margin_and_wraps_continuous_joints():
    limiter = MotionLimiter(**limits)
    limiter.reset(np.array([0.0, 3.0]))
    for _ in range(3000):
        q, _ = limiter.step(np.array([5.0, -3.0]), np.zeros(2), DT)
    assert q[0] == pytest.approx(0.95, abs=1e-3), "clamped to upper - margin"
    assert abs(wrap_to_pi(q[1] - (-3.0))) < 1e-3 and abs(q[1] - 3.0) < 0.4, "the short way round, through pi"


# -- control laws ------------------------------------------------------------------------------
def test_pd_law_per_mode():
    arm, gripper = dataclasses.replace(ARM7.groups["arm"], effort_law="pd"), ARM7.groups["gripper"]
    q = np.zeros(7)
    tau = group_command(arm, q, np.zeros(7), np.full(7, 0.01), np.full(7, 0.1), model_torque=np.ones(7))
    assert np.allclose(tau, arm.kp * 0.01 + arm.kd * 0.1 + 1.0)
    saturated = group_command(arm, q, np.zeros(7), np.full(7, 3.0), np.zeros(7), model_torque=None)
    assert np.allclose(saturated, arm.effort_limit)
    assert group_command(gripper, np.zeros(1), np.zeros(1), np.array([0.03]), np.zeros(1),
                         None) == pytest.approx([0.03])


def set_joints(world: World, q_full: np.ndarray, qd_full: np.ndarray) -> None:
    """Put the simulated robot's joints (Kinematics.joint_names order) at these positions and velocities."""
    for name, position, velocity in zip(world.embodiment.kinematics.joint_names, q_full, qd_full):
        world.data.qpos[world.qpos_adr[name]], world.data.qvel[world.dof_adr[name]] = position, velocity
    mujoco.mj_forward(world.model, world.data)


@pytest.mark.parametrize("name", ["arm7", "humanoid_upper"])  # fixed roots: a mobile base yields to the arm
def test_inverse_dynamics_torques_give_the_simulated_robot_the_acceleration_the_gains_ask_for(name):
    """The law's model torques give MuJoCo's robot the acceleration the gains ask for.

    Pinocchio's model (from the URDF, plus armature) against MuJoCo's physics of the same robot: in
    mid-motion, away from home, every effort joint accelerates as qdd* = (kp e + kd de) / I. (The
    URDF's joint damping, friction the law leaves to feedback, is off here.)
    """
    embodiment = load_embodiment(name)
    world = World(embodiment)
    world.reset(3)
    world.model.dof_damping[:] = 0.0
    law = CommandLaw(embodiment, embodiment.commanded_groups)
    rng = np.random.default_rng(0)
    effort = np.concatenate([np.full(len(g.joints), g.mode == "effort") for g in law.groups])
    q_full = world.joint_vector()
    q_full[law.index] += np.where(effort, rng.uniform(-0.2, 0.2, effort.size), 0.0)
    qd_full = np.zeros_like(q_full)
    qd_full[law.index] = np.where(effort, rng.uniform(-0.5, 0.5, effort.size), 0.0)
    set_joints(world, q_full, qd_full)
    q_target = q_full[law.index] + np.where(effort, 0.01, 0.0)
    qd_target = np.zeros(effort.size)
    commands = law.commands(q_full, qd_full, q_target, qd_target)
    wanted = []
    for group in law.groups:
        if group.mode != "effort":
            continue
        part = law.slices[group.name]
        assert np.all(np.abs(commands[group.name]) < group.effort_limit), "not clamped: the law is what is tested"
        world.data.ctrl[world.actuators[group.name]] = commands[group.name]
        wanted.append(desired_acceleration(group, q_full[law.index][part], qd_full[law.index][part],
                                           q_target[part], qd_target[part]))
    mujoco.mj_forward(world.model, world.data)
    got = [world.data.qacc[world.group_dof[g.name]] for g in law.groups if g.mode == "effort"]
    assert np.concatenate(got) == pytest.approx(np.concatenate(wanted), rel=0.02, abs=0.05)


def hold_with_late_torques(law: str, late_s: float, every_s: float, seconds: float = 3.0) -> float:
    """The peak joint speed [rad/s] of arm7 held with late torques, from 0.5 s after a kick on.

    arm7 holds a pose with joint 2 at 0.8 rad, its torques computed from a state `late_s` old and
    sent every `every_s` (held in between), after a kick that turns joints 1 and 3 against each
    other.
    """
    embodiment = load_embodiment("arm7")
    if law == "pd":
        embodiment.groups["arm"] = dataclasses.replace(embodiment.groups["arm"], effort_law="pd")
    world, dt = World(embodiment), 1.0 / embodiment.control_rate_hz
    world.reset(0)
    hardware = SimHardware(world)
    controller = Controller(embodiment)
    q = world.joint_vector()
    q[embodiment.kinematics.index(["joint2"])] = 0.8
    set_joints(world, q, np.zeros_like(q))
    states, late, every = [], round(late_s / dt), round(every_s / dt)
    kick, peak = 50, 0.0
    substeps = round(dt / world.model.opt.timestep)
    for k in range(round(seconds / dt)):
        states.append((world.joint_vector(), world.joint_velocity_vector()))
        if k % every == 0:
            controller.update_state(*states[max(0, k - late)], k * dt)
            for group, command in controller.step(k * dt, dt).commands.items():
                hardware.command(group, command, float(world.data.time))
        if k == kick:
            world.data.qvel[[world.dof_adr["joint1"], world.dof_adr["joint3"]]] += [0.5, -0.5]
        step(world, hardware, substeps, dt)
        if k > kick + 0.5 / dt:
            peak = max(peak, np.abs(world.joint_velocity_vector()[:7]).max())
    return peak


@pytest.mark.slow
def test_inverse_dynamics_holds_the_arm_with_torques_16_ms_late_where_per_joint_pd_swings_it():
    """Inverse dynamics damps out a kick that late torques keep swinging under per-joint PD.

    A controller across DDS from its hardware sends torques late; per joint, arm7's gains give the
    motion of joints 1 and 3 against each other far more bandwidth than it was tuned for, and late
    damping feeds it (docs/notes/inverse-dynamics.md).
    """
    assert hold_with_late_torques("inverse_dynamics", 0.016, 0.010) < 0.05, "the kick died away"
    assert hold_with_late_torques("pd", 0.016, 0.010) > 1.0, "per-joint PD keeps it swinging"


# -- controller ----------------------------------------------------------------------------------
def test_controller_waits_for_state_then_holds_home_in_effort_mode():
    controller = arm7_controller()
    assert controller.step(0.0, DT).commands == {"arm": None, "gripper": None}
    assert controller.state == WAITING
    out = step_at_home(controller)
    assert out.state == HOLDING
    gravity = ARM7.kinematics.gravity(home_state())[controller.kinematics_index][:7]
    assert np.allclose(out.commands["arm"], gravity, atol=1e-9), "at the target at rest: gravity only"
    assert out.commands["gripper"] == pytest.approx(ARM7.groups["gripper"].home)


def test_controller_tracks_a_chunk_and_holds_at_its_end():
    controller = arm7_controller()
    step_at_home(controller)
    controller.submit(smooth_chunk(controller, stamp=0.0), now=0.0)
    states = []
    for k in range(1, 600):
        now = k * DT
        states.append(step_at_home(controller, now).state)
    assert states[10] == RUNNING and states[-1] == HOLDING
    assert controller.limiter.q[0] == pytest.approx(ARM7.groups["arm"].home[0] + 0.1, abs=2e-3)


def test_a_chunk_right_after_a_reset_starts_from_the_newest_state_and_counts():
    """A reset and a chunk taken in the same period: the chunk is tracked, not refused (it used to be lost)."""
    controller = arm7_controller()
    step_at_home(controller)
    controller.reset()
    controller.submit(smooth_chunk(controller, stamp=DT), now=DT)
    assert controller.stats.chunks_accepted == 1
    for k in range(2, 300):
        step_at_home(controller, k * DT)
    assert controller.limiter.q[0] == pytest.approx(ARM7.groups["arm"].home[0] + 0.1, abs=2e-3)
    stale = arm7_controller()
    step_at_home(stale)
    stale.reset()
    with pytest.raises(ChunkRejected, match="no fresh joint_states"):
        stale.submit(smooth_chunk(stale, stamp=1.0), now=1.0)


def test_rejected_chunk_changes_nothing():
    controller = arm7_controller()
    step_at_home(controller)
    controller.submit(smooth_chunk(controller, stamp=0.0), now=0.0)
    before = [controller.timeline.sample(t)[0].copy() for t in (0.1, 0.3)]
    late = smooth_chunk(controller, stamp=-2.0, horizon=3.0)
    with pytest.raises(ChunkRejected, match="old"):
        controller.submit(late, now=0.0)
    after = [controller.timeline.sample(t)[0] for t in (0.1, 0.3)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert controller.stats.chunks_rejected == 1 and "old" in controller.stats.last_rejection


def test_stale_state_stops_motion_and_restarts_from_the_measured_pose():
    controller = arm7_controller(state_timeout_s=0.1)
    step_at_home(controller)
    controller.submit(smooth_chunk(controller, stamp=0.0, offset=0.5), now=0.0)
    for k in range(1, 50):
        step_at_home(controller, k * DT)
    out = controller.step(0.3, DT)  # the last state is 0.2 s old
    assert out.state == STALE
    assert out.commands["arm"] is None, "effort: silence, so the hardware watchdog brakes"
    assert np.array_equal(out.commands["gripper"], controller.limiter.q[7:]), "position: where it was commanded"
    assert np.all(out.qd_command == 0)
    moved = home_state() + 0.05
    controller.update_state(moved, np.zeros_like(moved), 0.31)
    out = controller.step(0.31, DT)
    assert out.state == HOLDING, "restarted: old chunks are forgotten"
    assert np.allclose(controller.limiter.q[:7], moved[controller.kinematics_index][:7])


def test_a_joint_far_from_its_command_drops_the_chunk_and_holds_where_it_is():
    """A teleported (or blocked) arm is held where it is measured, not pulled back.

    A gripper squeezing an object stays on its command.
    """
    controller = arm7_controller(following_error_rad=0.2)
    step_at_home(controller)
    controller.submit(smooth_chunk(controller, stamp=0.0, offset=0.3), now=0.0)
    for k in range(1, 50):
        step_at_home(controller, k * DT)
    squeezed = home_state()
    squeezed[ARM7.kinematics.index(["finger_joint"])] = 0.0  # commanded open (0.04), held shut by an object
    controller.update_state(squeezed, np.zeros_like(squeezed), 0.1)
    controller.step(0.1, DT)
    assert controller.stats.following_faults == 0
    teleported = home_state()
    teleported[ARM7.kinematics.index(["joint1"])] += 0.4
    controller.update_state(teleported, np.zeros_like(teleported), 0.102)
    out = controller.step(0.102, DT)
    assert controller.stats.following_faults == 1 and "joint1" in controller.stats.last_following_fault
    assert out.state == HOLDING, "the chunk is dropped"
    np.testing.assert_allclose(out.q_command[:7], teleported[controller.kinematics_index][:7])
    for k in range(52, 300):
        controller.update_state(teleported, np.zeros_like(teleported), k * DT)
        out = controller.step(k * DT, DT)
    np.testing.assert_allclose(out.q_command[:7], teleported[controller.kinematics_index][:7])
    assert controller.stats.following_faults == 1


def test_estop_latches_decelerates_within_limits_and_refuses_chunks_until_reset():
    controller = arm7_controller(following_error_rad=10.0)  # measured at home while commanded away
    step_at_home(controller)
    controller.submit(smooth_chunk(controller, stamp=0.0, offset=0.8), now=0.0)
    velocities = []
    for k in range(1, 200):
        now = k * DT
        if k == 100:
            controller.estop("test")
        out = step_at_home(controller, now)
        velocities.append(out.qd_command)
    assert out.state == ESTOP
    velocities = np.array(velocities)
    assert np.abs(velocities[100]).max() > 0.1, "it was moving"
    accel = np.abs(np.diff(velocities, axis=0)) / DT
    assert np.all(accel <= np.concatenate([g.accel_limit for g in controller.groups]) + 1e-6)
    for k in range(200, 400):
        out = step_at_home(controller, k * DT)
    assert np.abs(out.qd_command).max() == 0.0, "at rest"
    with pytest.raises(ChunkRejected, match="e-stop is latched"):
        controller.submit(smooth_chunk(controller, stamp=0.8), now=0.8)
    controller.reset()
    step_at_home(controller, 0.81)
    controller.submit(smooth_chunk(controller, stamp=0.81), now=0.81)


def test_humanoid_upper_body_weight_ramps_up_and_delegated_legs_are_never_commanded():
    humanoid = load_embodiment("humanoid_upper")
    controller = Controller(humanoid, ControllerConfig(upper_body_ramp_s=0.5))
    assert "legs" not in controller.law.slices
    q = np.zeros(len(humanoid.kinematics.joint_names))
    weights = []
    for k in range(400):
        controller.update_state(q, np.zeros_like(q), k * DT)
        out = controller.step(k * DT, DT)
        weights.append(controller.weight)
    assert weights[0] == 0.0 and weights[-1] == 1.0
    assert np.all(np.diff(weights) >= 0) and np.max(np.diff(weights)) < 0.02, "a smooth ramp, no step"
    assert set(out.commands) == {g.name for g in humanoid.commanded_groups}


@st.composite
def chunk_streams(draw):
    """Random valid chunks: arrival times, lags, lengths, targets within +-4 rad; the policy's or a person's.

    A takeover or hand-back arrives with some of them.
    """
    chunks, arrival = [], 0.0
    for _ in range(draw(st.integers(1, 6))):
        arrival += draw(st.floats(0.01, 0.3))
        lag = draw(st.floats(0.0, 0.2))
        count = draw(st.integers(1, 8))
        times = np.cumsum([draw(st.floats(0.01, 0.2)) for _ in range(count)])
        positions = np.array([[draw(st.floats(-4, 4)) for _ in range(8)] for _ in range(count)])
        chunks.append((arrival, arrival - lag, times, positions, draw(st.booleans()), draw(st.booleans())))
    return chunks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=chunk_streams(), strategy=st.sampled_from(["splice", "replace", "ensemble"]))
def test_random_chunk_streams_never_command_outside_limits(stream, strategy):
    """Whatever valid chunks arrive, from the policy or a person, commands stay inside every limit.

    Position, velocity, acceleration and effort limits hold, and commanded velocity never jumps more
    than a_max * dt per period, takeovers and hand-backs included. (The arm is measured at home
    throughout, so the following-error check, which restarts at rest on purpose, is off here; it has
    its own test.)
    """
    controller = arm7_controller(strategy=strategy, following_error_rad=10.0)
    step_at_home(controller)
    lower = np.concatenate([g.lower for g in controller.groups])
    upper = np.concatenate([g.upper for g in controller.groups])
    vmax = np.concatenate([g.velocity_limit for g in controller.groups])
    amax = np.concatenate([g.accel_limit for g in controller.groups])
    pending, previous = list(stream), np.zeros(8)
    for k in range(1, int((stream[-1][0] + 0.5) / DT)):
        now = k * DT
        while pending and pending[0][0] <= now:
            arrival, stamp, times, positions, teleop, toggle = pending.pop(0)
            if toggle:
                controller.set_intervention(not controller.intervening, now)
            try:
                controller.submit(JointChunk(stamp, tuple(controller.joints), times, positions), now, teleop)
            except ChunkRejected:
                pass  # in the past, or from the side not in charge: nothing changes
        out = step_at_home(controller, now)
        assert np.all(out.q_command >= lower - 1e-9) and np.all(out.q_command <= upper + 1e-9)
        assert np.all(np.abs(out.qd_command) <= vmax + 1e-9)
        assert np.all(np.abs(out.qd_command - previous) <= amax * DT + 1e-9)
        assert np.all(np.abs(out.commands["arm"]) <= ARM7.groups["arm"].effort_limit + 1e-9)
        previous = out.qd_command


@settings(max_examples=30, deadline=None)
@given(corruption=st.sampled_from(["nan", "inf", "length", "unknown", "time", "old"]), at=st.integers(0, 9))
def test_any_invalid_chunk_leaves_the_output_unchanged(corruption, at):
    """An invalid chunk leaves the commands exactly as they would have been.

    Two identical runs, one also offered a corrupted chunk (refused by the message conversion or the
    controller): identical commands throughout.
    """
    outputs = []
    for offer_bad in (False, True):
        controller = arm7_controller()
        step_at_home(controller)
        controller.submit(smooth_chunk(controller, stamp=0.0), now=0.0)
        run = []
        for k in range(1, 200):
            now = k * DT
            if offer_bad and k == 50:
                good = smooth_chunk(controller, stamp=now)
                joints, times, positions, stamp = list(good.joints), good.times, good.positions.copy(), now
                if corruption == "nan":
                    positions[at, 0] = np.nan
                elif corruption == "inf":
                    positions[at, 1] = np.inf
                elif corruption == "length":
                    positions = positions[:, :-1]
                elif corruption == "unknown":
                    joints = [*joints[:-1], "elbow"]
                elif corruption == "time":
                    times = times[::-1]
                else:
                    stamp = now - 5.0
                with pytest.raises(ChunkRejected):
                    controller.submit(JointChunk.from_points(stamp, joints, times, positions), now)
            run.append(step_at_home(controller, now).commands["arm"])
        outputs.append(np.array(run))
    assert np.array_equal(outputs[0], outputs[1])


# -- base -------------------------------------------------------------------------------------
MOBILE = load_embodiment("mobile_manipulator")


def mobile_controller(**config) -> Controller:
    return Controller(MOBILE, ControllerConfig(**config))


def mobile_step(controller: Controller, now: float):
    q = np.zeros(len(MOBILE.kinematics.joint_names))
    for group in MOBILE.commanded_groups:
        q[MOBILE.kinematics.index(group.joints)] = group.home
    controller.update_state(q, np.zeros_like(q), now)
    return controller.step(now, DT)


def base_commands(controller: Controller, until: float) -> np.ndarray:
    """(t, vx, vy, wz) of every base command from 0 to `until` [s]."""
    rows = []
    for k in range(int(until / DT)):
        out = mobile_step(controller, k * DT)
        if out.base is not None:
            rows.append([k * DT, *out.base])
    return np.array(rows)


def test_base_follows_its_chunk_within_acceleration_limits_and_stops_after_the_timeout():
    """The base ramps to the chunk's 0.3 m/s within the acceleration limit and stops after the timeout.

    It changes by at most a*dt per base period, and returns to 0 once the chunk arrived longer than
    the base timeout ago, even though its points reach further.
    """
    controller = mobile_controller(base_timeout_s=0.5)
    mobile_step(controller, 0.0)
    controller.submit_base(BaseChunk(0.0, np.linspace(0.1, 2.0, 20), np.tile([0.3, 0.0, 0.0], (20, 1))), 0.05)
    commands = base_commands(controller, 1.6)
    assert np.allclose(np.diff(commands[:, 0]), BASE_PERIOD_S, atol=DT), "one command per base period"
    steps = np.abs(np.diff(commands[:, 1:], axis=0))
    assert np.all(steps <= MOBILE.base.max_acceleration * BASE_PERIOD_S + 1e-12)
    assert commands[commands[:, 0] < 0.55, 1].max() == pytest.approx(0.3)
    assert commands[-1, 1] == 0.0, "stopped: the chunk timed out at 0.55 s"


def test_a_base_chunk_is_refused_on_e_stop_and_the_base_brakes():
    controller = mobile_controller()
    mobile_step(controller, 0.0)
    controller.submit_base(BaseChunk(0.0, np.linspace(0.1, 2.0, 20), np.tile([0.3, 0.0, 0.0], (20, 1))), 0.0)
    base_commands(controller, 0.5)
    controller.estop("test")
    with pytest.raises(ChunkRejected, match="e-stop is latched"):
        controller.submit_base(BaseChunk(0.5, [0.1], [[0.3, 0.0, 0.0]]), 0.5)
    assert controller.stats.last_rejection.startswith("base: e-stop is latched")
    commands = [mobile_step(controller, 0.5 + k * DT).base for k in range(400)]
    assert [c for c in commands if c is not None][-1].tolist() == [0.0, 0.0, 0.0], "braked to a stop"


@pytest.mark.parametrize("times, velocities, reason", [
    ([0.1, 0.2], [[0, 0, np.nan], [0, 0, 0]], "non-finite"),
    ([0.2, 0.1], [[0, 0, 0], [0, 0, 0]], "strictly increasing"),
    ([0.1, 0.2], [[0, 0], [0, 0]], "shape"),
])
def test_bad_base_chunks_are_rejected(times, velocities, reason):
    with pytest.raises(ChunkRejected, match=reason):
        BaseChunk(0.0, times, velocities)


def test_base_chunks_without_a_base_or_too_old_are_rejected():
    assert "has no mobile base" in pytest.raises(ChunkRejected, arm7_controller().submit_base,
                                                 BaseChunk(0.0, [0.1], [[0, 0, 0]]), 0.0).value.reason
    controller = mobile_controller(max_chunk_age_s=0.5)
    with pytest.raises(ChunkRejected, match="observation is 1.000 s old"):
        controller.submit_base(BaseChunk(0.0, [0.1], [[0, 0, 0]]), 1.0)


def test_base_velocities_beyond_the_limits_are_clamped():
    controller = mobile_controller(base_timeout_s=10.0)
    controller.submit_base(BaseChunk(0.0, [0.1, 5.0], [[50.0, -50.0, 50.0]] * 2), 0.0)
    limit = MOBILE.base.max_velocity
    assert np.allclose(controller.base.target(1.0), [limit[0], -limit[1], limit[2]])


def test_a_rate_counts_its_periods_from_start_not_from_when_it_was_made():
    """A loop that begins late sleeps whole periods from its start.

    Bursting through the periods before it instead would put sim_node's stamps that far ahead of
    the wall clock, and the controller refuses chunks stamped in its future.
    """
    rate = PreciseRate(1000.0, max_lag=500)
    time.sleep(0.1)
    rate.start()
    begun = time.monotonic()
    for _ in range(20):
        rate.sleep()
    assert time.monotonic() - begun >= 20 * rate.period_s
    assert rate.overruns == 0
