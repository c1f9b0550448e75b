"""Where stages declare themselves: once, in their own package; the runner, config, report and CLI read it here.

    trainforge/<package>/spec.py  ── SPECS = (StageSpec(...), SectionSpec(...))
          │  listed once in SPEC_MODULES below (or register_stage() from a test or plugin)
          ▼
    specs()  in order: topological over `after`, ties broken by registration order
          ├─▶ config.py   one optional `Config` field per spec (section class, description), check hooks
          ├─▶ run.py      the stages, their run-directory paths, what feeds each cache key
          ├─▶ report/     one report section per spec that has one
          └─▶ cli.py      the verbs of each spec's CLI module

A spec module imports only its package's config classes, paths.py and this file: listing the
stages (for `--help`, or to build the config) must not pull in torch. Entry, report and CLI hooks
are `module:function` strings, imported only when they are used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The one registration: a package's stages and config sections live in its spec module, and a new
# stage is one more module here. Their order is the tie-break of the stage order and the order of
# the config's sections.
SPEC_MODULES: tuple[str, ...] = (
    "trainforge.collect.spec",
    "trainforge.data.spec",
    "trainforge.train.spec",
    "trainforge.evaluate.spec",
    "trainforge.compress.spec",
    "trainforge.serve.spec",
    "trainforge.tune.spec",
    "trainforge.label.spec",
)


@dataclass(frozen=True, kw_only=True)
class SectionSpec:
    """A config section that `trainforge run` does not run as a stage (serve:, tune:)."""

    name: str
    """The config key (`serve:`); a section left out of a config is None."""
    section: type
    """The pydantic class of the section (a trainforge.section.Section), its defaults and field docs."""
    description: str
    """One line: what the section is for; the `Config` field's description in `trainforge config schema`."""
    report: str | None = None
    """`module:function`, `(run_dir) -> str | None`: its report.html fragment, None when there is nothing to show."""
    cli: str | None = None
    """A module with `register(subparsers)` that adds the package's verbs to `trainforge`."""
    check: Callable[[Any], None] | None = None
    """`check(config)`, run when the config is loaded and this section is present: a rule across sections
    that no one section can check; raises trainforge.errors.UserError naming the keys."""


@dataclass(frozen=True, kw_only=True)
class StageSpec(SectionSpec):
    """A stage of `trainforge run`: a SectionSpec plus how it runs. Its section present in a config enables it."""

    entry: str
    """`module:function`, `(StageContext) -> dict of metrics`, imported only when the stage runs (keeps --help fast)."""
    writes: tuple[str, ...]
    """Run-directory paths it writes (trainforge.paths names); their sha256 is recorded, and a result is
    reused only while they are on disk unmodified (so a stage that writes nothing is never cached)."""
    reads: tuple[str, ...] = ()
    """Run-directory paths it needs; missing ones are an error before it starts."""
    reads_if_present: tuple[str, ...] = ()
    """Paths it reads when an earlier optional stage wrote them (e.g. pretrain/); hashed when present."""
    after: tuple[str, ...] = ()
    """The stages it depends on: they run first, and their keys are part of its key."""
    sections: tuple[str, ...] = ()
    """Config sections it reads besides its own (register reads serve.drift); hashed into its key with its own."""
    distributed: bool = False
    """Under torchrun every rank runs it (it joins the process group itself); other stages run on rank 0 only."""

    @property
    def key_sections(self) -> tuple[str, ...]:
        """Every config section hashed into its cache key: its own first, then the others it reads."""
        return (self.name, *(s for s in self.sections if s != self.name))


_declared: list[SectionSpec] | None = None  # from SPEC_MODULES, loaded on first use
_registered: list[SectionSpec] = []  # from register_stage(), after the declared ones
_ordered: tuple[SectionSpec, ...] | None = None


def _load_declared() -> list[SectionSpec]:
    global _declared
    if _declared is None:
        _declared = [spec for module in SPEC_MODULES for spec in importlib.import_module(module).SPECS]
    return _declared


def register_stage(spec: SectionSpec) -> SectionSpec:
    """Add a stage (or section) from a test or a plugin; it joins the config, the runner and the report."""
    global _ordered
    if any(s.name == spec.name for s in (*_load_declared(), *_registered)):
        raise ValueError(f"a stage or config section named '{spec.name}' is already registered")
    ordered([*_load_declared(), *_registered, spec])  # refuse an unknown dependency or a cycle now
    _registered.append(spec)
    _ordered = None
    return spec


def unregister_stage(name: str) -> None:
    """Remove a spec added by register_stage (tests clean up after themselves)."""
    global _ordered
    _registered[:] = [s for s in _registered if s.name != name]
    _ordered = None


def specs() -> tuple[SectionSpec, ...]:
    """Every declared stage and section, in stage order."""
    global _ordered
    if _ordered is None:
        _ordered = ordered([*_load_declared(), *_registered])
    return _ordered


def stage_specs() -> tuple[StageSpec, ...]:
    """The stages of `trainforge run`, in the order they run."""
    return tuple(s for s in specs() if isinstance(s, StageSpec))


def ordered(declared: list[SectionSpec]) -> tuple[SectionSpec, ...]:
    """Topological order over `after`; among the specs whose dependencies are all placed, the one
    registered first goes next, so a chain declared in order keeps that order."""
    names = [s.name for s in declared]
    for s in declared:
        for dep in getattr(s, "after", ()):
            if dep not in names or not isinstance(declared[names.index(dep)], StageSpec):
                raise ValueError(f"stage '{s.name}': after={dep!r} is not a registered stage (stages: {', '.join(names)})")
    placed: list[SectionSpec] = []
    left = list(declared)
    while left:
        done = {p.name for p in placed}
        ready = next((s for s in left if set(getattr(s, "after", ())) <= done), None)
        if ready is None:
            raise ValueError(f"stages {', '.join(s.name for s in left)} depend on each other in a cycle")
        placed.append(ready)
        left.remove(ready)
    return tuple(placed)


def upstream(name: str) -> tuple[str, ...]:
    """The stages `name` depends on, directly or through others, then `name` itself; in stage order."""
    by_name = {s.name: s for s in stage_specs()}
    needed, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in needed:
            needed.add(n)
            todo.extend(by_name[n].after)
    return tuple(s.name for s in stage_specs() if s.name in needed)


def load(entry: str) -> Callable:
    """The function a `module:function` string names (imported now, not before)."""
    module, _, func = entry.partition(":")
    return getattr(importlib.import_module(module), func)
