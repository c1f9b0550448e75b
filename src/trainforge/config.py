"""Typed config: YAML + dotted overrides, validated by pydantic, unknown keys rejected.

One source of truth: the defaults and one-line docs live on the section classes; a YAML file a
user copies (examples/) sets what differs; `key.sub=value` on the command line sets the rest.
A section left out is a stage not run.

Which sections exist is declared once, by the stages (trainforge.stages): `Config` is the fields
every run has (RunSettings) plus one optional field per declared section, in stage order. A spec's
`check(config)` runs after validation, for rules that span sections.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from trainforge import stages
from trainforge.errors import UserError
from trainforge.section import Section


class TrackingConfig(Section):
    enabled: bool = True
    """Log params, metrics and artifacts to MLflow."""
    uri: str | None = None
    """MLflow tracking URI; null uses $MLFLOW_TRACKING_URI, else sqlite:///<runs_dir>/mlflow.db."""
    experiment: str = "trainforge"
    """MLflow experiment name."""


class RunSettings(Section):
    """What every run has, whatever its stages: a name, a seed, where it goes, tracking."""

    name: str
    """Run name; outputs go to <runs_dir>/<name>/."""
    seed: int = 42
    """Seeds Python, NumPy and torch; the same seed and config reproduce a run."""
    runs_dir: str = "runs"
    """Parent folder of run directories (and of the default MLflow store)."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking."""
    device: str = "auto"
    """Where models run: auto (cuda:LOCAL_RANK when CUDA is present, else mps, else cpu), cpu, cuda, cuda:N or mps."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("a run name is one folder name: no '/', not empty, not starting with '.'")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def _with_sections(base: type[RunSettings], specs: tuple[stages.SectionSpec, ...]) -> type[RunSettings]:
    """`base` plus one optional field per spec, in stage order: the section's class, default None (a
    section left out is a stage not run), the spec's description as the field's doc."""
    keys = {*RunSettings.model_fields, *(s.name for s in specs)}
    for spec in specs:
        if spec.name in RunSettings.model_fields:
            raise ValueError(f"config section '{spec.name}' clashes with the config key '{spec.name}' every run has")
        unknown = [name for name in getattr(spec, "sections", ()) if name not in keys]
        if unknown:
            raise ValueError(f"stage '{spec.name}': sections={unknown} are not config keys (keys: {', '.join(keys)})")
    # Every section field is given here, even one `base` has already: an inherited field is re-read
    # from the class, and `register` would then find ABCMeta.register there as its default.
    fields: dict[str, Any] = {s.name: (s.section | None, Field(None, description=s.description)) for s in specs}
    with warnings.catch_warnings():
        # pydantic notes that the field `register` shadows ABCMeta.register, which only exists on the
        # class (cfg.register on an instance is the field): noise
        warnings.filterwarnings("ignore", message='Field name "register" in "Config" shadows')
        return create_model("Config", __base__=base, __module__=__name__, __doc__=CONFIG_DOC, **fields)


CONFIG_DOC = "A whole run: one section per stage, in the order they run."

Config = _with_sections(RunSettings, stages.specs())
"""The run's config class (use it in type hints): RunSettings plus one field per spec of trainforge.stages."""


@functools.lru_cache(maxsize=8)
def _extended(all_specs: tuple[stages.SectionSpec, ...]) -> type[RunSettings]:
    return _with_sections(Config, all_specs)


def config_model() -> type[RunSettings]:
    """The model a config is validated against: `Config`, plus a field per stage registered since
    (trainforge.stages.register_stage), so such a stage's section validates like the built-in ones."""
    declared = stages.specs()
    return Config if all(s.name in Config.model_fields for s in declared) else _extended(declared)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `a.b=value` overrides, validate. Raises UserError on any mistake."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file (try one of examples/*.yaml)")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        ctx = e.context_mark
        opened = f" ({e.context} at line {ctx.line + 1})" if ctx and e.context and ctx.line != mark.line else ""
        raise UserError(f"{path}: YAML syntax error at {where}: {e.problem}{opened}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections (name:, data:, train: …)")
    origin = {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value, item)
        origin[key] = item
    return validate_config(raw, source=str(path), yaml_text=text, override_origin=origin)


def config_of_run(run: str | Path) -> Config:
    """The resolved config a run directory was made with, pointed at where the run is now (it may have moved)."""
    resolved = Path(run) / "config.resolved.yaml"
    if not resolved.is_file():
        raise UserError(f"{run}: not a run directory (no config.resolved.yaml); pass runs/<name>")
    cfg = load_config(resolved)
    return cfg.model_copy(update={"runs_dir": str(Path(run).resolve().parent), "name": Path(run).resolve().name})


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=3e-4` → ("train.lr", 0.0003). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise UserError(f"override '{item}': expected key.path=value, e.g. train.lr=3e-4")
    key, _, value_text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override '{item}': empty key segment")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    # YAML 1.1 reads 3e-4 as a string; let pydantic's number parsing decide instead of guessing.
    return key, value


def set_dotted(raw: dict, key: str, value: Any, item: str) -> None:
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, item)]
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise UserError(f"override '{item}': {'.'.join(parts[: i + 1])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, item)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise UserError(f"override '{item}': '{part}' is not an index of a list of {len(node)}")
    return int(part)


def validate_config(
    raw: dict,
    source: str = "<config>",
    yaml_text: str | None = None,
    override_origin: dict[str, str] | None = None,
) -> Config:
    """Validate a config mapping, then run the specs' cross-section checks on the sections present."""
    model = config_model()
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        lines = [_describe(model, err, source, yaml_text, override_origin or {}) for err in e.errors()]
        raise UserError("\n".join(lines)) from None
    for spec in stages.specs():
        if spec.check is not None and getattr(cfg, spec.name) is not None:
            try:
                spec.check(cfg)
            except UserError as e:
                line = yaml_line(yaml_text, (spec.name,)) if yaml_text is not None else None
                raise UserError(f"{source}:{line}: {e}" if line else f"{source}: {e}") from None
    return cfg


def _describe(model: type[BaseModel], err: dict, source: str, yaml_text: str | None, origin: dict[str, str]) -> str:
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "<top>"
    where = source
    if dotted in origin:
        where = f"override '{origin[dotted]}'"
    elif yaml_text is not None:
        line = yaml_line(yaml_text, loc)
        if line:
            where = f"{source}:{line}"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        known = list(_fields_at(model, parent))
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        prefix = ".".join(str(p) for p in parent)
        hint = f"did you mean {prefix + '.' if prefix else ''}{guess[0]}?" if guess else f"known keys: {', '.join(known)}"
        return f"{where}: {dotted}: unknown key — {hint}"
    if kind == "missing":
        return f"{where}: {dotted}: required key is missing"
    got = err.get("input")
    got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return f"{where}: {dotted}: {err['msg']}{got_text}"


def _fields_at(model: type[BaseModel], loc: tuple) -> dict:
    """The fields of the section at `loc`, following Optional/list annotations."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = _model_of(current).model_fields if _model_of(current) else {}
        if part not in fields:
            return {}
        current = fields[part].annotation
    m = _model_of(current)
    return m.model_fields if m else {}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, list) or str(get_origin(annotation)) == "<class 'types.UnionType'>":
        for arg in get_args(annotation):
            m = _model_of(arg)
            if m:
                return m
    return None


def yaml_line(yaml_text: str, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the YAML text, or of its deepest existing parent."""
    try:
        node = yaml.compose(yaml_text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML: every default filled in, re-runnable as is."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} → {'train.lr': 1}; lists are indexed (data.sources.0.builtin)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def config_schema() -> dict:
    return config_model().model_json_schema()
