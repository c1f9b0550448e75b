"""What a stage or a tool adds to the training loop without editing it: one object, three moments.

    fit(..., callbacks=[cb])      or, from outside the stage that calls fit:   with callbacks.active(cb): ...
        after each optimizer step   cb.on_step_end(step, model, optimizer) -> {name: float} | None   (logged)
        after each evaluation       cb.on_evaluate(step, scores)           (raise to stop: e.g. a pruned trial)
        in every checkpoint         cb.state_dict() / cb.load_state_dict(state)   (resume stays bit-identical)

A callback that needs none of these leaves it out: every method is optional. `model` is what trains
(a DDP/FSDP wrapper where there is one; `unwrap(model)` gives the module). Callbacks run on every rank,
in the order given, the `active()` ones after those passed to fit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

_ACTIVE: list[Any] = []


class Callback(Protocol):  # every method optional; the loop calls those a callback has
    def on_step_end(self, step: int, model, optimizer) -> dict[str, float] | None: ...

    def on_evaluate(self, step: int, scores: dict[str, float]) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@contextlib.contextmanager
def active(*callbacks) -> Iterator[None]:
    """Every fit() started inside the block also runs `callbacks` (a tuning trial's pruning report, say)."""
    _ACTIVE.extend(callbacks)
    try:
        yield
    finally:
        for cb in callbacks:
            _ACTIVE.remove(cb)


def collect(given) -> list:
    return [*(given or ()), *_ACTIVE]


def unwrap(model):
    """The module inside a DDP (`.module`) or torch.compile (`._orig_mod`) wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def step_end(cbs: list, step: int, model, optimizer) -> dict[str, float]:
    logged: dict[str, float] = {}
    for cb in cbs:
        if hasattr(cb, "on_step_end"):
            logged.update(cb.on_step_end(step, model, optimizer) or {})
    return logged


def evaluated(cbs: list, step: int, scores: dict[str, float]) -> None:
    for cb in cbs:
        if hasattr(cb, "on_evaluate"):
            cb.on_evaluate(step, scores)


def states(cbs: list) -> list:
    return [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in cbs]


def restore(cbs: list, saved: list | None) -> None:
    for cb, state in zip(cbs, saved or []):
        if state is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(state)
