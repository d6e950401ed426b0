"""The one shape of every vla_ros node: declared parameters, a clock, diagnostics, loops, a clean stop.

A node subclasses `VlaNode` and names its parameters: a frozen dataclass (`params_type`, a subclass
of `NodeParams`) whose fields are made with `vla_ros.params.param`. The base

- declares every field as a ROS parameter with its description and range, read-only unless the
  field is dynamic, and builds `self.params` from the values: a value the dataclass refuses stops
  the node with the reason (exit 2). Setting a dynamic parameter at run time replaces
  `self.params` after the same checks and calls `on_params(old, new)`; a refused value changes
  nothing and the caller gets the reason;
- gives the node's time, `now()` (ROS time: /clock under use_sim_time);
- publishes `report()` every `diagnostics_period_s` as a diagnostic_msgs/DiagnosticArray on the
  absolute `/diagnostics`, the status named after the node's fully qualified name (two robots in
  two namespaces never collide, and a standard aggregator finds every node);
- runs the node's loop threads (`start_loop`): a publish racing the shutdown of ROS ends a loop
  quietly, an unexpected error in one logs it and shuts the node down (its process exits 1)
  rather than leaving it running without its loop;
- stops in order (`run`): on Ctrl-C or SIGTERM, `close()` (the loops stop, then the node's own
  `on_close()`) runs while ROS is still up, so a node can ramp a humanoid's arms down or finish a
  bag before the middleware goes.
"""
from __future__ import annotations

import dataclasses
import gc
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Header

from vla_ros.errors import VlaRosError
from vla_ros.params import Params, param, specs
from vla_ros.ros.qos import RELIABLE
from vla_ros.ros.time import to_stamp

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
# Python hands the GIL between threads every 5 ms by default: far too coarse for a control or physics
# loop at 500-1000 Hz sharing its process with the executor. Nodes with such loops (`realtime`) hand
# it over every 50 us, so a loop waking at its deadline gets it within a fraction of a period.
SWITCH_INTERVAL_S = 0.00005
SPIN_S = 0.1  # the main thread wakes this often to see a stop asked for by a signal


@dataclass(frozen=True)
class NodeParams(Params):
    """The parameters every vla_ros node takes."""

    diagnostics_period_s: float = param(1.0, "interval of the node's status on /diagnostics [s]", low=0.05, high=60.0)


@dataclass(frozen=True)
class RobotParams(NodeParams):
    """The parameters of a node that serves one robot."""

    embodiment: str = param("arm7", "a shipped embodiment (arm7, mobile_manipulator, humanoid_upper, ur5e) or the path "
                                    "of an embodiment file")


@dataclass(frozen=True)
class Report:
    """A node's status: its level (OK, WARN, ERROR), one line for people, and values for tools."""

    level: bytes
    message: str
    values: Mapping[str, object] = dataclasses.field(default_factory=dict)


class VlaNode(Node):
    """Base of every vla_ros node (see the module docstring)."""

    params_type: type[NodeParams] = NodeParams
    realtime = False  # the node runs a loop at hundreds of Hz: hand the GIL over every SWITCH_INTERVAL_S

    def __init__(self, name: str, **node_options):
        super().__init__(name, **node_options)
        self.params = self._declare()
        self.hardware_id = ""  # the robot a status is about (DiagnosticStatus.hardware_id)
        self.stopping = threading.Event()
        self.failure: str | None = None
        self._loops: list[threading.Thread] = []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self.create_timer(self.params.diagnostics_period_s, self._publish_report)

    # -- parameters ------------------------------------------------------------------------
    def _declare(self) -> NodeParams:
        values = {}
        for field, spec in specs(self.params_type):
            descriptor = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic)
            if spec.choices:
                descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
            if spec.low is not None and isinstance(field.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=spec.low, to_value=spec.high,
                                                                      step=0.0)]
            elif spec.low is not None and isinstance(field.default, int) and not isinstance(field.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
            try:
                values[field.name] = self.declare_parameter(field.name, field.default, descriptor).value
            except ParameterException as error:
                raise VlaRosError(f"{self.get_name()}: parameter {field.name}: {error}") from None
        try:
            return self.params_type(**values)
        except VlaRosError as error:
            raise VlaRosError(f"{self.get_name()}: {error}") from None

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        mine = {field.name: spec for field, spec in specs(self.params_type)}
        changes = {p.name: p.value for p in parameters if p.name in mine}
        fixed = [name for name in changes if not mine[name].dynamic]
        if fixed:
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)} cannot change at run time")
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = dataclasses.replace(self.params, **changes)
        except VlaRosError as error:
            return SetParametersResult(successful=False, reason=str(error))
        old, self.params = self.params, new
        self.on_params(old, new)
        return SetParametersResult(successful=True)

    def on_params(self, old: NodeParams, new: NodeParams) -> None:
        """Dynamic parameters changed (executor thread); `self.params` is already `new`."""

    # -- time and reporting ------------------------------------------------------------------
    def now(self) -> float:
        """[s] the node's ROS time (the wall clock, or /clock under use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def report(self) -> Report:
        """The node's status now (override)."""
        return Report(OK, "running")

    def _publish_report(self) -> None:
        report = self.report()
        status = DiagnosticStatus(level=report.level, name=self.get_fully_qualified_name(), message=report.message,
                                  hardware_id=self.hardware_id,
                                  values=[KeyValue(key=key, value=str(value)) for key, value in report.values.items()])
        self._diagnostics.publish(DiagnosticArray(header=Header(stamp=to_stamp(self.now())), status=[status]))

    # -- loops and stopping --------------------------------------------------------------------
    def start_loop(self, loop: Callable[[], None], name: str) -> None:
        """Run `loop` on a thread of its own; it should return soon after `self.stopping` is set."""
        if self.realtime:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        thread = threading.Thread(target=self._run_loop, args=(loop,), name=name, daemon=True)
        self._loops.append(thread)
        thread.start()

    def _run_loop(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except RCLError:
            if self.context.ok() and not self.stopping.is_set():
                self._fail()
        except Exception:  # noqa: BLE001 - not hidden: logged in full, and the node stops
            self._fail()

    def _fail(self) -> None:
        self.failure = f"{threading.current_thread().name} failed:\n{traceback.format_exc()}"
        self.get_logger().fatal(self.failure)
        self.context.try_shutdown()

    def close(self) -> None:
        """Stop the loops, then `on_close()`; ROS is still up unless the node failed."""
        self.stopping.set()
        for thread in self._loops:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self.on_close()

    def on_close(self) -> None:
        """Release what the node holds once its loops have stopped (override)."""


def run(node_type: Callable[[], VlaNode], args: list[str] | None = None) -> None:
    """Init ROS, spin the node until Ctrl-C, SIGTERM or an external shutdown, then close it.

    The ros2/examples idiom, with the node's own stop before ROS's. The signals only ask for the
    stop, which the spin loop takes within SPIN_S: a KeyboardInterrupt raised at an arbitrary
    bytecode can land inside rclpy's conversion of a message, which turns it into a RuntimeError
    and kills the node without its close. A second Ctrl-C interrupts at once (a node stuck while
    being built).

    A VlaRosError while building the node (a bad parameter or embodiment file) is printed as one
    line and the process exits 2; a loop that failed makes it exit 1.
    """
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    failure = None
    try:
        with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
            try:
                node = node_type()
            except VlaRosError as error:
                print(f"[FATAL] {error}", file=sys.stderr)
                sys.exit(2)
            # Everything built so far lives as long as the node: keep it out of the garbage
            # collector's full passes, which would otherwise stall a control loop for milliseconds.
            gc.collect()
            gc.freeze()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                while rclpy.ok() and not stop.is_set():
                    executor.spin_once(timeout_sec=SPIN_S)
            finally:
                node.close()
                failure = node.failure
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    if failure is not None:
        sys.exit(1)
