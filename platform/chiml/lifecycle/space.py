"""The search-space DSL of training scripts: ``float_range``, ``int_range``, ``choice``.

A :class:`Space` is a fixed default outside tuning and an Optuna suggestion inside a trial
(:func:`chiml.lifecycle.params.params` decides which).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna

from chiml.errors import InvalidInputError


@dataclass(frozen=True)
class Space:
    """A tunable parameter: a fixed default outside tuning, a suggestion inside it."""

    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None

    def default_value(self) -> Any:
        if self.default is not None:
            return self.default
        if self.kind == "categorical":
            return self.choices[0]
        assert self.low is not None and self.high is not None
        middle = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return round(middle) if self.kind == "int" else middle

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


def float_range(
    low: float, high: float, *, log: bool = False, step: float | None = None, default: float | None = None
) -> Space:
    """A float in ``[low, high]`` (log-uniform with ``log=True``)."""
    if not low < high:
        raise InvalidInputError(f"float_range: low ({low}) must be below high ({high})")
    return Space("float", float(low), float(high), log=log, step=step, default=default)


def int_range(low: int, high: int, *, log: bool = False, step: int = 1, default: int | None = None) -> Space:
    """An integer in ``[low, high]``."""
    if not low < high:
        raise InvalidInputError(f"int_range: low ({low}) must be below high ({high})")
    return Space("int", low, high, log=log, step=step, default=default)


def choice(options: Sequence[Any], *, default: Any = None) -> Space:
    """One of ``options`` (None, bool, int, float or str: what Optuna can store)."""
    if not options:
        raise InvalidInputError("choice: needs at least one option")
    return Space("categorical", choices=tuple(options), default=default)
