"""Report sections drawn from constructed stage outputs (no training): the curves, the drift reference, tables."""

from __future__ import annotations

import json

from trainforge.report.html import anchor_section, contents, is_number_cell, table


def _state(evals: list[tuple[int, float, float]], best_step: int) -> dict:
    hist = [{"step": s, "loss": 5.0 - s * 0.01, "lr": 1e-3} for s in range(1, 101)]
    ev = [{"step": s, "val_loss": loss, "val_accuracy": acc} for s, loss, acc in evals]
    return {"method": "full", "lm_loss": 0.5, "log_history": hist, "eval_history": ev,
            "best": next({"step": s, "val_loss": loss, "val_accuracy": acc} for s, loss, acc in evals if s == best_step),
            "steps": 100, "tokens": 10_000, "train_seconds": 3.0, "tokens_per_second": 3333.0, "parameters": 1_000_000,
            "trainable_parameters": 1_000_000, "micro_batch": 16, "grad_accum": 1}


def test_training_section_has_pretraining_and_fine_tuning_curves_and_flags_a_best_last_step(tmp_path):
    from trainforge.train.report import training

    (tmp_path / "model").mkdir()
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "model" / "trainer_state.json").write_text(json.dumps(_state([(50, 0.40, 0.80), (100, 0.34, 0.86)], 100)))
    phase = {"log_history": [{"step": s, "loss": 8 - s / 50} for s in range(1, 201)],
             "eval_history": [{"step": 100, "val_loss": 6.1}, {"step": 200, "val_loss": 5.9}],
             "best": {"step": 200, "val_loss": 5.9}, "steps": 200, "tokens": 50_000, "seconds": 10.0, "tokens_per_second": 5000.0}
    (tmp_path / "pretrain" / "pretrain_state.json").write_text(json.dumps({"parameters": 1_000_000, "phases": {"general": phase}, "metrics": {}}))
    html = training(tmp_path)
    assert html.index("Pretraining") < html.index("Fine-tuning")
    assert html.count("<img") == 2  # a pretraining figure and a fine-tuning figure
    assert "the model was still improving when training stopped" in html and "Best validation loss at the last evaluation" in html
    (tmp_path / "model" / "trainer_state.json").write_text(json.dumps(_state([(50, 0.30, 0.88), (100, 0.34, 0.86)], 50)))
    assert "still improving" not in training(tmp_path).split("Fine-tuning")[1]


def test_curves_figure_keeps_train_and_validation_apart_with_legends_outside():
    from trainforge.train.report import curves_figure

    st = _state([(50, 0.40, 0.80), (100, 0.34, 0.86)], 100)
    fig = curves_figure([("fine-tuning", st["log_history"], st["eval_history"])], "train loss", "t")
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["train loss", "validation loss", "validation accuracy"]
    for ax in axes:
        legend = ax.get_legend()
        assert legend is not None and legend.get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the axes


def test_registration_section_draws_the_drift_reference_profile(tmp_path):
    from tests.conftest import make_reviews
    from trainforge.serve.config import DriftConfig
    from trainforge.serve.drift import build_profile
    from trainforge.serve.report import registration

    rows = make_reviews(60)
    profile = build_profile([r["text"] for r in rows], [r["label"] for r in rows], DriftConfig(clusters=3), seed=0)
    (tmp_path / "register").mkdir()
    (tmp_path / "register" / "drift_profile.json").write_text(json.dumps(profile, ensure_ascii=False))
    (tmp_path / "register" / "registered.json").write_text(json.dumps(
        {"name": "m", "version": "3", "alias": "challenger", "source": "model/", "tracking_uri": "sqlite:///x.db"}))
    html = registration(tmp_path)
    assert "@challenger" in html and "<img" in html and "60 training texts" in html


def test_tables_align_text_left_numbers_right_and_contents_link_every_heading():
    assert is_number_cell("0.8619") and is_number_cell("2.29x") and is_number_cell("1,234") and is_number_cell("7.3 / 5.5")
    assert not is_number_cell("positive") and not is_number_cell("很好") and not is_number_cell(True)
    html = table(["label", "n", "text"], [["pos", 3, "很好"], ["neg", "—", "糟糕"]])
    assert "<th>label</th><th class=num>n</th><th>text</th>" in html and "<td class='num'>3</td>" in html
    assert "<td>很好</td>" in html and html.startswith("<div class='scroll'><table>")
    body, heads = anchor_section("evaluation", "<h2>Evaluation</h2><h3>Per class</h3><h3>Per class</h3>")
    assert body.startswith("<section id='evaluation'>")
    assert [h[1] for h in heads] == ["evaluation", "evaluation-per-class", "evaluation-per-class-2"]
    toc = contents(heads)
    assert all(f"#{h[1]}" in toc for h in heads)


def test_clip_cuts_with_an_ellipsis_and_keeps_the_whole_text_on_hover():
    from trainforge.report.html import DATA_LANG, clip

    token = DATA_LANG.set("zh")
    try:
        s = clip("这" * 100, 10)
    finally:
        DATA_LANG.reset(token)
    assert s == f"<span class='clip' lang='zh' title='{'这' * 100}'>{'这' * 9}…</span>"
    assert clip("short", 10) == "<span lang='en'>short</span>"
