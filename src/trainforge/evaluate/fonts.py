"""A font that draws Chinese glyphs in matplotlib, found once per process.

matplotlib's default DejaVu Sans has no CJK glyphs: Chinese tokens on an attention map come
out as empty boxes, with only a warning. Where the font comes from, in order:
  1. the system: any installed font whose family is a known CJK family (Noto Sans CJK,
     Source Han Sans, WenQuanYi, SimHei, ...), as matplotlib's font manager sees them;
  2. the `pylopdf-fonts-zh-cn` wheel (Noto Sans SC, SIL OFL, ~8 MB; in trainforge[eval]),
     so a clean machine with only pip gets the glyphs too;
  3. neither: plots still render, with a warning that says what to install.
Latin text keeps DejaVu Sans: matplotlib (>= 3.6) falls back glyph by glyph along the family list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trainforge.console import console

KNOWN_CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Source Han Sans SC",
    "Source Han Sans CN", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei",
    "PingFang SC", "Heiti SC", "Hiragino Sans GB", "AR PL UMing CN", "Droid Sans Fallback",
)


@dataclass(frozen=True)
class CjkFont:
    family: str | None
    """Family name matplotlib knows it by; None when no CJK font was found."""
    path: str | None
    """The font file (the adversarial attack renders glyphs from it to find look-alike characters)."""
    source: str
    """Where it came from, for the report: "system: <path>", "pip: pylopdf-fonts-zh-cn" or "none"."""


@functools.lru_cache(maxsize=1)
def setup_cjk_font() -> CjkFont:
    """Register a CJK font and put it after DejaVu Sans in rcParams (idempotent)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    found = _system_font(font_manager) or _pip_font(font_manager)
    if found is None:
        console.print(
            "[yellow]no CJK-capable font found: Chinese tokens in plots will render as boxes. "
            "Install one with `pip install pylopdf-fonts-zh-cn` (part of trainforge[eval]) or "
            "`apt-get install fonts-noto-cjk`.[/]"
        )
        return CjkFont(None, None, "none")
    family, path, source = found
    # glyph-by-glyph fallback needs concrete families in font.family (a generic name resolves to one font)
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", family]
    matplotlib.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212
    # the one shipped weight serves bold titles too; matplotlib would log "findfont: Failed to find
    # font weight bold" on every bold label otherwise
    import logging

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return CjkFont(family, path, source)


def _system_font(font_manager) -> tuple[str, str, str] | None:
    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for family in KNOWN_CJK_FAMILIES:
        if family in by_name:
            return family, by_name[family], f"system: {by_name[family]}"
    return None


def _pip_font(font_manager) -> tuple[str, str, str] | None:
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = pylopdf_fonts_zh_cn.sans_path()
    if not path.is_file():
        return None
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name(), str(path), "pip: pylopdf-fonts-zh-cn (Noto Sans SC)"
