"""The CJK font: found (system or pip) or, failing both, a warning that says what to install."""

from __future__ import annotations

from trainforge.evaluate import fonts


def test_font_found_renders_chinese_without_missing_glyph_warnings(tmp_path, recwarn):
    font = fonts.setup_cjk_font()
    if font.family is None:  # neither a system CJK font nor the pip wheel here: the fallback test covers it
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 1))
    ax.set_title("注意力 rollout 好评")
    fig.savefig(tmp_path / "t.png")
    plt.close(fig)
    assert not [w for w in recwarn if "missing from font" in str(w.message)]
    assert font.source.startswith(("system:", "pip:")) and font.path


def test_no_cjk_font_falls_back_with_a_message(monkeypatch, capsys):
    import matplotlib

    saved = matplotlib.rcParams["font.family"]
    monkeypatch.setattr(fonts, "_system_font", lambda fm: None)
    monkeypatch.setattr(fonts, "_pip_font", lambda fm: None)
    fonts.setup_cjk_font.cache_clear()
    try:
        font = fonts.setup_cjk_font()
        assert font == fonts.CjkFont(None, None, "none")
        assert "pip install pylopdf-fonts-zh-cn" in capsys.readouterr().err
    finally:
        fonts.setup_cjk_font.cache_clear()
        matplotlib.rcParams["font.family"] = saved
