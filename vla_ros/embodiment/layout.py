"""The policy's padded action vector: which slots belong to which group, and normalisation.

One generalist policy drives many bodies through one vector of fixed width (32 by default). Each
embodiment maps its commanded groups, in order, onto the first slots; the rest is padding, masked
out of the loss and zero on the way in. The same layout serves the proprioceptive state.
"""
from __future__ import annotations

from collections.abc import Mapping
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
    normalized: bool

    @property
    def stop(self) -> int:
        return self.start + len(self.names)


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
    def build(cls, width: int, groups: list[tuple[str, tuple[str, ...], bool]]) -> ActionLayout:
        """Layout of (group, slot names, normalized) entries packed from slot 0."""
        slots, start = [], 0
        for group, names, normalized in groups:
            slots.append(Slot(group, start, tuple(names), normalized))
            start += len(names)
        if start > width:
            raise LayoutError(f"the groups need {start} slots, more than the width {width}")
        return cls(width, tuple(slots))

    @property
    def used(self) -> int:
        return int(self.mask.sum())

    def slot(self, group: str) -> Slot:
        return self._by_group[group]

    def pack(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """(width,) float64 vector from one array per group; padding is 0."""
        missing = [slot.group for slot in self.slots if slot.group not in values]
        extra = sorted(set(values) - set(self._by_group))
        if missing or extra:
            raise LayoutError(f"pack needs exactly the groups {list(self._by_group)}; missing {missing}, unknown {extra}")
        vector = np.zeros(self.width)
        for slot in self.slots:
            group_values = np.asarray(values[slot.group], dtype=float)
            if group_values.shape != (len(slot.names),):
                raise LayoutError(f"group {slot.group!r} takes {len(slot.names)} values, got shape {group_values.shape}")
            vector[slot.start:slot.stop] = group_values
        return vector

    @property
    def names(self) -> tuple[str, ...]:
        """The used slots' names (joints and base channels), in vector order: the embodiment layout."""
        return tuple(name for slot in self.slots for name in slot.names)

    def pad(self, values: np.ndarray) -> np.ndarray:
        """(..., used) values in the embodiment layout -> (..., width) padded vectors, padding 0."""
        values = np.asarray(values)
        if values.shape[-1] != self.used:
            raise LayoutError(f"expected {self.used} values per row ({', '.join(self.names)}), got shape {values.shape}")
        vectors = np.zeros((*values.shape[:-1], self.width), dtype=values.dtype)
        vectors[..., self.mask] = values
        return vectors

    def unpad(self, vectors: np.ndarray) -> np.ndarray:
        """(..., width) padded vectors -> (..., used) values in the embodiment layout (the mask applied)."""
        vectors = np.asarray(vectors)
        if vectors.shape[-1] != self.width:
            raise LayoutError(f"expected vectors of width {self.width}, got shape {vectors.shape}")
        return vectors[..., self.mask]

    def unpack(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """One array per group from a (width,) vector (copies; padding is ignored)."""
        vector = np.asarray(vector)
        if vector.shape[-1] != self.width:
            raise LayoutError(f"expected a vector of width {self.width}, got shape {vector.shape}")
        return {slot.group: vector[..., slot.start:slot.stop].copy() for slot in self.slots}


class Normalizer:
    """Per-slot (x - mean) / std on normalised slots; identity on the others and on padding."""

    def __init__(self, layout: ActionLayout, stats: Mapping[str, tuple[np.ndarray, np.ndarray]]):
        self.mean = np.zeros(layout.width)
        self.std = np.ones(layout.width)
        for group, (mean, std) in stats.items():
            slot = layout.slot(group)
            if not slot.normalized:
                raise LayoutError(f"group {group!r} is not normalised (grippers and hands never are)")
            self.mean[slot.start:slot.stop] = mean
            self.std[slot.start:slot.stop] = std

    def normalize(self, vectors: np.ndarray) -> np.ndarray:
        """(..., width) -> (..., width)."""
        return (vectors - self.mean) / self.std

    def denormalize(self, vectors: np.ndarray) -> np.ndarray:
        """Inverse of normalize()."""
        return vectors * self.std + self.mean
