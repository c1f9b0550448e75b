"""CLI manners: exit codes, no traceback for user mistakes, a fast --help."""

from __future__ import annotations

import subprocess
import sys

from trainforge.cli import main


def test_help_lists_verbs_and_imports_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from trainforge.cli import build_parser\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try: build_parser().parse_args(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'sklearn', 'fastapi') if m in sys.modules]\n"
        "print(buf.getvalue()); print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for verb in ("run", "train", "eval", "report", "config", "models"):
        assert verb in out


def test_unknown_key_exits_2_without_traceback(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntrain: {lrr: 1}\n")
    assert main(["config", "show", str(p)]) == 2
    err = capsys.readouterr().err
    assert "did you mean train.lr?" in err and "Traceback" not in err


def test_missing_config_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_bad_override_exits_2(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntrain: {}\n")
    assert main(["config", "show", str(p), "train.lr=fast"]) == 2
    assert "override 'train.lr=fast'" in capsys.readouterr().err


def test_config_show_prints_resolved_defaults(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntrain: {lr: 0.5}\n")
    assert main(["config", "show", str(p)]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "batch_size: 32" in out


def test_config_schema_is_json_schema(capsys):
    import json

    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Config" and "train" in schema["properties"]


def test_internal_error_exits_1(tiny_config, monkeypatch, capsys):
    import trainforge.evaluate.stage as eval_stage

    monkeypatch.setattr(eval_stage, "run_eval", lambda ctx: 1 / 0)
    assert main(["run", str(tiny_config)]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "resumes at 'eval'" in err


def test_report_on_missing_run_exits_2(tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    assert "encoder-tiny" in capsys.readouterr().out



def test_overrides_may_follow_options(tmp_path):
    """`run CONFIG --only data name=x`: the overrides after an option still count; a stray option does not."""
    import pytest

    from trainforge.cli import parse

    args = parse(["run", "c.yaml", "train.lr=0.1", "--only", "data", "train.lr=0.5", "name=y", "--force", "train"])
    assert args.overrides == ["train.lr=0.1", "train.lr=0.5", "name=y"]
    assert args.only == ["data"] and args.force == ["train"]
    for bad in (["run", "c.yaml", "--only", "data", "--bogus"], ["report", "runs/x", "name=y"]):
        with pytest.raises(SystemExit):
            parse(bad)
