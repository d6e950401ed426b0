"""Parameters described once: dataclass fields that carry their description, range and mutability.

A node's parameters are one frozen dataclass, a subclass of `Params`, whose fields are made with
`param(...)`. Built from values, the dataclass checks itself (type, range, choices, then the
class's own `check()` for rules between fields) and raises `ParamError` naming the parameter and
the value. The node base (vla_ros.nodes.base) declares every field as a ROS parameter from the
same metadata (description, range, read-only unless `dynamic`), and `markdown_table` writes the
README's parameter tables from it, so the three never disagree. Cores use it too: a Controller
built in Python checks what a controller_node started with `-p` checks.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vla_ros.errors import VlaRosError, did_you_mean

SCALARS = (bool, int, float, str)


class ParamError(VlaRosError):
    """A parameter value that is refused, with the parameter's name and the value."""

    def __init__(self, name: str, value: object, problem: str):
        self.name, self.value, self.problem = name, value, problem
        super().__init__(f"parameter {name}={value!r}: {problem}")


@dataclass(frozen=True)
class Spec:
    """What a parameter is: its description, the range or choices it takes, whether it may change at run time."""

    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    dynamic: bool = False


def param(default: bool | int | float | str, description: str, *, low: float | None = None,
          high: float | None = None, choices: Sequence[str] = (), dynamic: bool = False):
    """A dataclass field for a parameter.

    `default` fixes its type; numbers may have a [low, high] range, strings a set of `choices`;
    `dynamic` ones may be set while the node runs.
    """
    if type(default) not in SCALARS:
        raise TypeError(f"a parameter default must be bool, int, float or str, got {default!r}")
    return dataclasses.field(default=default, metadata={"param": Spec(description, low, high, tuple(choices), dynamic)})


@dataclass(frozen=True)
class Params:
    """Base of parameter dataclasses: every `param` field is checked when one is built."""

    def __post_init__(self):
        for field, spec in specs(type(self)):
            object.__setattr__(self, field.name, _checked(field.name, getattr(self, field.name), field.default, spec))
        self.check()

    def check(self) -> None:
        """Rules between fields (override); raise ParamError."""


def specs(cls: type[Params]) -> Iterator[tuple[dataclasses.Field, Spec]]:
    """(field, spec) of every parameter of `cls`, in declaration order."""
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("param")
        if spec is not None:
            yield field, spec


def _checked(name: str, value: object, default: object, spec: Spec) -> object:
    """`value` as the type of `default` (an int is a float where a float is wanted), or ParamError."""
    kind = type(default)
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise ParamError(name, value, f"must be a {kind.__name__}")
    if spec.low is not None and not value >= spec.low:
        raise ParamError(name, value, f"below the lowest allowed value {spec.low:g}")
    if spec.high is not None and not value <= spec.high:
        raise ParamError(name, value, f"above the highest allowed value {spec.high:g}")
    if spec.choices and value not in spec.choices:
        raise ParamError(name, value,
                         f"must be one of {', '.join(spec.choices)}{did_you_mean(str(value), spec.choices)}")
    return value


def markdown_table(cls: type[Params], skip: type[Params] | None = None) -> str:
    """The README table of `cls`'s parameters (those of `skip`, a base class, left out)."""
    skipped = {field.name for field, _ in specs(skip)} if skip else set()
    rows = ["| parameter | type | default | range | changes | description |", "|---|---|---|---|---|---|"]
    for field, spec in specs(cls):
        if field.name in skipped:
            continue
        rows.append(f"| `{field.name}` | {type(field.default).__name__} | {_text(field.default)} | {_range(spec)} | "
                    f"{'at run time' if spec.dynamic else 'at start'} | {spec.description} |")
    return "\n".join(rows)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "(empty)"
    return f"`{value!r}`"


def _range(spec: Spec) -> str:
    if spec.choices:
        return " \\| ".join(f"`{choice}`" for choice in spec.choices)
    if spec.low is None and spec.high is None:
        return ""
    return f"{'' if spec.low is None else f'{spec.low:g}'} .. {'' if spec.high is None else f'{spec.high:g}'}"
