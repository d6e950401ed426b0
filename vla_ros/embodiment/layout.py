"""The policy's padded action vector: which slots belong to which group.

One generalist policy drives many bodies through one vector of fixed width (32 by default). Each
embodiment maps its action groups, in order, onto the first slots; the rest is padding, masked
out of the loss and zero on the way in. The same layout serves the proprioceptive state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError


class LayoutError(VlaRosError):
    """Values that do not fit an action layout."""


@dataclass(frozen=True)
class Slot:
    """The slots [start, start + len(names)) of one group; `names` are joints or base channels."""

    group: str
    start: int
    names: tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.start + len(self.names)


def pad(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(..., used) values -> (..., width) vectors holding them where `mask` (width,) is True, 0 elsewhere."""
    values = np.asarray(values)
    vectors = np.zeros((*values.shape[:-1], len(mask)), dtype=values.dtype)
    vectors[..., mask] = values
    return vectors


class ActionLayout:
    """Groups packed in order into a vector of `width` slots.

    Attributes:
        width: the padded width.
        slots: one Slot per group, in vector order.
        mask: (width,) bool, True on slots a group owns.
    """

    def __init__(self, width: int, slots: tuple[Slot, ...]):
        self.width = width
        self.slots = slots
        self.mask = np.zeros(width, dtype=bool)
        for slot in slots:
            self.mask[slot.start:slot.stop] = True
        self._by_group = {slot.group: slot for slot in slots}

    @classmethod
    def build(cls, width: int, groups: list[tuple[str, tuple[str, ...]]]) -> ActionLayout:
        """Layout of (group, slot names) entries packed from slot 0."""
        slots, start = [], 0
        for group, names in groups:
            slots.append(Slot(group, start, tuple(names)))
            start += len(names)
        if start > width:
            raise LayoutError(f"the groups need {start} slots, more than the width {width}")
        return cls(width, tuple(slots))

    @property
    def used(self) -> int:
        return int(self.mask.sum())

    def slot(self, group: str) -> Slot:
        return self._by_group[group]

    @property
    def names(self) -> tuple[str, ...]:
        """The used slots' names (joints and base channels), in vector order: the embodiment layout."""
        return tuple(name for slot in self.slots for name in slot.names)

    def unpad(self, vectors: np.ndarray) -> np.ndarray:
        """(..., width) padded vectors -> (..., used) values in the embodiment layout (the mask applied)."""
        vectors = np.asarray(vectors)
        if vectors.shape[-1] != self.width:
            raise LayoutError(f"expected vectors of width {self.width}, got shape {vectors.shape}")
        return vectors[..., self.mask]
