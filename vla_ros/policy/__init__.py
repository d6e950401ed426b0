"""Policies: the interface every backend speaks, the backends, and an openpi-compatible server (no ROS)."""
from vla_ros.policy.interface import (
    ActionChunk,
    ActionSpace,
    ActionSpaceError,
    BackendUnavailable,
    GripperMap,
    Observation,
    Policy,
    PolicyError,
)
from vla_ros.policy.registry import MODULES, backend, describe, make_policy, parameters, parse_params

__all__ = [
    "MODULES", "ActionChunk", "ActionSpace", "ActionSpaceError", "BackendUnavailable", "GripperMap",
    "Observation", "Policy",
    "PolicyError", "backend", "describe", "make_policy", "parameters", "parse_params",
]
