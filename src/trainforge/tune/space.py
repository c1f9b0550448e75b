"""The search space: from a trial's suggestions to a config, conditional keys included, checked before it runs.

    base config ──(each space key in order: `when` holds? suggest : keep base value)──▶ trial config ──▶ validate

A conditional key (`when: {train.method: lora}`) is read against the trial's config as built so far:
it may depend on a fixed key of the config or on a searched key, which is then sampled first.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from trainforge.config import Config, set_dotted, validate_config
from trainforge.errors import UserError
from trainforge.tune.config import SearchDim, TuneConfig

MISSING = object()


def get_dotted(raw: dict, key: str, default: Any = None) -> Any:
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def suggest(trial, key: str, dim: SearchDim):
    if dim.choices is not None:
        return trial.suggest_categorical(key, dim.choices)
    if dim.int:
        return trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
    return trial.suggest_float(key, dim.low, dim.high, log=dim.log, step=dim.step)


def ordered(space: dict[str, SearchDim]) -> list[str]:
    """Space keys in sampling order: a key after every searched key its `when` reads (else as listed)."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            raise UserError(f"tune.space.{key}.when: the conditions form a circle through {key}")
        visiting.add(key)
        for cond in space[key].when or {}:
            if cond in space and cond != key:
                visit(cond)
        visiting.discard(key)
        done.append(key)

    for key in space:
        visit(key)
    return done


def sample_config(trial, space: dict[str, SearchDim], base_raw: dict) -> dict:
    """The trial's config mapping: the base with every active space key set from the trial's suggestions."""
    raw = copy.deepcopy(base_raw)
    for key in ordered(space):
        dim = space[key]
        if dim.matches({c: get_dotted(raw, c) for c in dim.when or {}}):
            set_dotted(raw, key, suggest(trial, key, dim), f"tune.space.{key}")
    return raw


def check_trial_config(raw: dict, source: str) -> Config:
    """Validate a trial's config; a bad value is refused here, before anything runs, with its key named."""
    try:
        return validate_config(raw, source=source)
    except UserError as e:
        raise UserError(f"invalid trial config, not run: {e}") from None


def probe_space(tcfg: TuneConfig, base_raw: dict, source: str) -> None:
    """Every key must exist and every bound/choice must validate, before the first trial starts."""
    ordered(tcfg.space)  # no circular conditions
    for key, dim in tcfg.space.items():
        for cond in dim.when or {}:
            if cond not in tcfg.space and get_dotted(base_raw, cond, MISSING) is MISSING:
                raise UserError(f"tune.space.{key}.when: {cond} is not a key of the config")
        values = dim.choices if dim.choices is not None else [dim.low, dim.high]
        for value in values:
            probe = json.loads(json.dumps(base_raw))
            for cond, want in (dim.when or {}).items():  # make the condition hold, so the key is really used
                set_dotted(probe, cond, want[0] if isinstance(want, list) else want, f"tune.space.{key}.when")
            if dim.int and value is not None and dim.choices is None:
                value = int(value)
            set_dotted(probe, key, value, f"tune.space.{key}")
            validate_config(probe, source=f"{source} (tune.space.{key}={value})")


def grid_space(space: dict[str, SearchDim]) -> dict[str, list]:
    """{key: every value} for the grid sampler: choices, int ranges, or float ranges with a step."""
    grid: dict[str, list] = {}
    for key, dim in space.items():
        if dim.when:
            raise UserError(f"tune.space.{key}.when: the grid sampler takes no conditional keys; use tpe or random")
        if dim.choices is not None:
            grid[key] = list(dim.choices)
        elif dim.int:
            grid[key] = list(range(int(dim.low), int(dim.high) + 1, int(dim.step or 1)))
        elif dim.step is not None:
            n = int(round((dim.high - dim.low) / dim.step))
            grid[key] = [round(dim.low + i * dim.step, 12) for i in range(n + 1) if dim.low + i * dim.step <= dim.high + 1e-12]
        else:
            raise UserError(f"tune.space.{key}: the grid sampler needs choices or a step for a float range")
    return grid
