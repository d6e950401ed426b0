"""sensor_msgs/JointState -> positions and velocities in a fixed joint order."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import JointState

from vla_ros.errors import VlaRosError


class JointStateError(VlaRosError):
    """A JointState that cannot be used, with the reason."""


class JointStateReader:
    """Reads JointState messages into arrays ordered like `joints` (extra names are ignored).

    The name -> index map is built once per distinct name list, so the usual case (a driver that
    always sends the same names) costs two fancy-index operations per message.
    """

    def __init__(self, joints: Sequence[str]):
        self.joints = list(joints)
        self._names: list[str] | None = None
        self._order: np.ndarray | None = None

    def read(self, msg: JointState) -> tuple[np.ndarray, np.ndarray]:
        """(q, qd) of `joints`, or JointStateError (missing or repeated joints, wrong lengths, NaN/Inf)."""
        if msg.name != self._names:
            names = list(msg.name)
            missing = [j for j in self.joints if j not in names]
            if missing:
                raise JointStateError(f"joint_states lack {missing}")
            twice = [j for j in self.joints if names.count(j) > 1]
            if twice:
                raise JointStateError(f"joint_states name {twice} more than once")
            self._order = np.array([names.index(j) for j in self.joints])
            self._names = names
        if len(msg.position) != len(msg.name) or len(msg.velocity) != len(msg.name):
            raise JointStateError(f"joint_states has {len(msg.name)} names, {len(msg.position)} positions and "
                                  f"{len(msg.velocity)} velocities (the controller needs both for every joint)")
        q = np.asarray(msg.position)[self._order]
        qd = np.asarray(msg.velocity)[self._order]
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
            bad = [self.joints[i] for i in np.flatnonzero(~(np.isfinite(q) & np.isfinite(qd)))]
            raise JointStateError(f"non-finite joint_states for {bad}")
        return q, qd
