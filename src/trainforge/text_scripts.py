"""Which characters belong to which script: the one definition for the data filters, MinHash
shingling, decontamination, the adversarial substitutes and the BLEU/ROUGE tokeniser.

Ranges are strings for the inside of a regex character class, so a caller can combine them
(`[^\\W{CJK_IDEOGRAPHS}]+` is a run of non-CJK letters). The variants are narrower or wider on
purpose, each for the reason given; widening one would change what a documented step does.

    CJK_IDEOGRAPHS        U+3400–4DBF ext. A, U+4E00–9FFF unified, U+F900–FAFF compatibility
      ⊃ CJK_UNIFIED       U+4E00–9FFF
          ⊃ HAN_GB        U+4E00–9FA5
    CJK_WITH_KANA_HANGUL  CJK_IDEOGRAPHS + KANA + HANGUL
"""

from __future__ import annotations

import re

CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""What counts as a CJK character for tokens, n-gram units and "is this CJK text"."""
CJK_UNIFIED = "\u4e00-\u9fff"
"""The unified block alone: the adversarial substitutes (pinyin homophones, rendered look-alikes)
perturb these characters, and the random draws per character must stay what they were."""
HAN_GB = "\u4e00-\u9fa5"
"""The script_ratio filter's `han` (documented as [\\u4e00-\\u9fa5]): the 20,902 original unified
ideographs, the range Chinese text-cleaning scripts conventionally use for "is Chinese"."""
KANA = "\u3040-\u30ff"
"""Hiragana and katakana."""
HANGUL = "\uac00-\ud7af"
"""Hangul syllables."""
CJK_WITH_KANA_HANGUL = CJK_IDEOGRAPHS + KANA + HANGUL
"""BLEU/ROUGE tokenising: one token per character for Japanese and Korean too (no spaces to split on)."""

SCRIPTS = {
    "han": HAN_GB,
    "latin": "A-Za-z\u00c0-\u024f",
    "cyrillic": "\u0400-\u04ff",
    "arabic": "\u0600-\u06ff",
    "kana": KANA,
    "hangul": HANGUL,
}
"""The scripts a script_ratio filter can measure."""

CJK = re.compile(f"[{CJK_IDEOGRAPHS}]")
NON_CJK_WORD = re.compile(f"[^\\W{CJK_IDEOGRAPHS}]+")
"""A run of non-CJK letters/digits."""

CJK_TEXT_SHARE = 0.3
"""Text whose characters are at least this share CJK is shingled by characters, not words."""


def is_cjk_text(text: str, min_share: float = CJK_TEXT_SHARE) -> bool:
    return bool(text) and len(CJK.findall(text)) >= min_share * len(text)
