"""The report of a tiny tracked run: summary first, the run id and registry, an anchor for every section;
ids and extra fields of the user's records kept through the run; MLflow's files beside its store."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import make_reviews, tiny_config_dict

pytestmark = pytest.mark.slow  # one tiny tracked run of five stages for the whole module (~40 s on 2 shared cores)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """data → train → eval → compress → register, tracked in MLflow, started from an empty working directory."""
    from trainforge.config import validate_config
    from trainforge.run import run_pipeline

    root = tmp_path_factory.mktemp("tracked")
    rows = make_reviews(240)
    for i, r in enumerate(rows):
        r["id"] = f"b{i:03d}"  # the user's own ids
        r["source"] = ["shop", "hotel"][i % 2]  # a field named like one the record writes itself
    rows += rows[:20]  # exact duplicates
    with open(root / "reviews.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    raw = tiny_config_dict(root / "reviews.jsonl", root / "runs", tracking=True)
    raw["eval"].update(attention_examples=1, adversarial={"samples": 0, "perturbation_samples": 0})  # tested in evaluate/
    raw["compress"] = {"latency_batches": 1, "onnx": False, "gates": {"min_speedup_b32": None, "max_metric_drop": 1.0}}
    raw["register"] = {"name": "tiny-reviews", "alias": "champion"}
    cwd = root / "cwd"
    cwd.mkdir()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        cfg = validate_config(raw)
        run_pipeline(cfg)
    finally:
        os.chdir(before)
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
    return cfg, cwd


def _section(html: str, sid: str) -> str:
    m = re.search(rf"<section id='{sid}'>(.*?)</section>", html, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def test_summary_comes_first_with_verdict_candidate_registry_and_run(tracked_run):
    cfg, _ = tracked_run
    html = (cfg.run_dir / "report.html").read_text(encoding="utf-8")
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert html.index("<section id='summary'>") < html.index("<img")  # before the first plot
    summary = _section(html, "summary")
    paired = json.loads((cfg.run_dir / "eval" / "metrics.json").read_text())["paired"]
    assert f"McNemar exact p = <b>{paired['mcnemar_p']:.3g}</b>" in summary and "95% CI" in summary
    run_id = manifest["mlflow_run_id"]
    assert run_id and run_id in summary and "not tracked" not in html
    registered = json.loads((cfg.run_dir / "register" / "registered.json").read_text())
    assert f"<b>tiny-reviews</b> version {registered['version']} as <code>@champion</code>" in summary
    candidate = json.loads((cfg.run_dir / "compress" / "candidate.json").read_text())["name"]
    assert candidate and candidate in summary and "at batch 1" in summary and "at batch 32" in summary
    assert manifest["status"] == "ok" and manifest["finished"] >= manifest["started"] and manifest["seconds"] > 0
    assert "status <span class='ok'>ok</span>" in summary and "duration" in summary
    assert manifest["machine"]["cpu"] in summary and "no GPU" in summary


def test_every_section_has_an_anchor_in_the_contents(tracked_run):
    from trainforge.report.html import report_sections

    cfg, _ = tracked_run
    html = (cfg.run_dir / "report.html").read_text(encoding="utf-8")
    toc = re.search(r"<nav class='toc' id='contents'>(.*?)</nav>", html, re.S).group(1)
    present = re.findall(r"<section id='([a-z_]+)'>", html)
    expected = {"summary", "overview", "lineage", "data_funnel", "training", "evaluation", "compression", "registration"}
    assert expected <= set(present)
    assert [e.partition(":")[2] for e in report_sections() if e.partition(":")[2] in present] == present  # page order
    for sid in present:
        assert f"href='#{sid}'" in toc
    for hid in re.findall(r"<h3[^>]* id='([^']+)'", html):  # every sub-heading is linked too, and ids are unique
        assert f"href=#{hid}>" in toc and html.count(f"id='{hid}'") == 1
    assert html.index("<nav class='toc'") < html.index("<section id='overview'>")


def test_page_is_readable_on_a_phone_and_marks_the_data_language(tracked_run):
    cfg, _ = tracked_run
    html = (cfg.run_dir / "report.html").read_text(encoding="utf-8")
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert html.count("<table>") == html.count("<div class='scroll'><table>")  # every table scrolls sideways
    assert "lang='zh'" in html  # review texts are Chinese
    assert "td{border:1px solid #d9dde6;padding:.3em .6em;text-align:left" in html.replace("td,th{", "td{")
    lineage = _section(html, "lineage")
    assert f"trainforge run {(cfg.run_dir / 'config.resolved.yaml').resolve()}" in lineage
    assert json.loads((cfg.run_dir / "manifest.json").read_text())["config_sha256"] in lineage
    assert "<details><summary>Full resolved config" in lineage


def test_a_run_keeps_the_records_own_ids_and_fields(tracked_run):
    cfg, _ = tracked_run
    rows = [json.loads(line) for line in (cfg.run_dir / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(re.fullmatch(r"b\d{3}", r["id"]) for r in rows)
    assert {r["original_source"] for r in rows} == {"shop", "hotel"}  # the user's `source`, not overwritten by the file name
    assert all(r["source"].endswith("reviews.jsonl") for r in rows)
    predictions = (cfg.run_dir / "eval" / "predictions.jsonl").read_text().splitlines()
    assert all(re.fullmatch(r"b\d{3}", json.loads(p)["id"]) for p in predictions)


def test_mlflow_files_stay_beside_the_store(tracked_run):
    import mlflow

    cfg, cwd = tracked_run
    assert not (cwd / "mlruns").exists() and list(cwd.iterdir()) == [], list(cwd.iterdir())
    runs = cfg.run_dir.parent
    run_id = json.loads((cfg.run_dir / "manifest.json").read_text())["mlflow_run_id"]
    run = mlflow.MlflowClient(f"sqlite:///{(runs / 'mlflow.db').resolve()}").get_run(run_id)
    assert run.info.artifact_uri.startswith((runs / "mlartifacts").resolve().as_uri())
    assert (runs / "mlartifacts").is_dir() and any((runs / "mlartifacts").rglob("report.html"))
