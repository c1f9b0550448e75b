"""Chinese-aware text normalisation. Each step is on/off in config and counts the documents it changed.

Order matters: HTML first (entities may hide full-width or control characters), then NFKC and
full-width folding, control characters, traditional → simplified, PII masking (on the folded text,
so a full-width phone number is caught), whitespace last.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

from trainforge.data.config import NormalizeConfig

_TAG = re.compile(r"<[^<>]{0,2000}>")
# full-width ASCII block FF01–FF5E → 0021–007E; the ideographic space → a space
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_KEEP_CONTROL = {"\n", "\t"}
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Chinese resident ID: 6-digit region, birth date 18xx–20xx, 3-digit sequence, check digit (validated below)
CN_ID = re.compile(r"(?<![0-9])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
PHONE = re.compile(r"(?<![0-9])(?:(?:\+|00)?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?![0-9])|(?<![0-9])0\d{2,3}-\d{7,8}(?![0-9])")
BANK_CARD = re.compile(r"(?<![0-9])(?:\d{4}[ -]?){3}\d{4,7}(?![0-9])")


def id_checksum_ok(number: str) -> bool:
    """GB 11643-1999 check digit."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(number[:17], weights))
    return "10X98765432"[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask_pii(text: str) -> tuple[str, Counter]:
    found: Counter = Counter()

    def sub(pattern, token, check=None):
        nonlocal text

        def repl(m):
            if check is not None and not check(m.group(0)):
                return m.group(0)
            found[token] += 1
            return f"<{token}>"

        text = pattern.sub(repl, text)

    if "@" in text:
        sub(EMAIL, "EMAIL")
    if any(c.isdigit() for c in text):
        sub(CN_ID, "ID_NUMBER", id_checksum_ok)
        sub(BANK_CARD, "BANK_CARD", lambda s: luhn_ok(re.sub(r"[ -]", "", s)))
        sub(PHONE, "PHONE")
    return text, found


def _strip_control(text: str) -> str:
    # Cc: C0/C1 controls; Cf: zero-width space/joiners, BOM, bidi marks
    return "".join(c for c in text if c in _KEEP_CONTROL or unicodedata.category(c) not in ("Cc", "Cf"))


def _whitespace(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class Normalizer:
    """`normalizer(text) -> text`; `normalizer.changed[step]` counts documents each step changed."""

    def __init__(self, cfg: NormalizeConfig):
        self.cfg = cfg
        self.changed: Counter = Counter()
        self.pii: Counter = Counter()
        self._t2s = None
        if cfg.traditional_to_simplified:
            try:
                from hanziconv import HanziConv
            except ImportError:
                from trainforge.errors import UserError

                raise UserError("data.normalize.traditional_to_simplified needs hanziconv: pip install 'trainforge[data]'") from None
            # hanziconv's own table, applied with str.translate: its toSimplified does a str.find per character
            trad = HanziConv._HanziConv__traditional_charmap
            simp = HanziConv._HanziConv__simplified_charmap
            table = {ord(t): s for t, s in zip(trad, simp) if t != s}
            self._t2s = lambda text: text.translate(table)

    def _step(self, name: str, before: str, after: str) -> str:
        if after != before:
            self.changed[name] += 1
        return after

    def __call__(self, text: str) -> str:
        cfg = self.cfg
        if cfg.html and ("<" in text or "&" in text):
            text = self._step("html", text, html.unescape(_TAG.sub(" ", text)))
        if cfg.nfkc and not text.isascii():
            text = self._step("nfkc", text, unicodedata.normalize("NFKC", text))
        if cfg.fullwidth and not text.isascii():
            text = self._step("fullwidth", text, text.translate(_FULLWIDTH))
        if cfg.control_chars and not text.isprintable():
            text = self._step("control_chars", text, _strip_control(text))
        if self._t2s is not None and not text.isascii():
            text = self._step("traditional_to_simplified", text, self._t2s(text))
        if cfg.pii == "mask":
            masked, found = mask_pii(text)
            self.pii.update(found)
            text = self._step("pii", text, masked)
        if cfg.whitespace:
            text = self._step("whitespace", text, _whitespace(text))
        return text

    def segments(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        """The text fields of one record (a chat's messages, prompt and responses): a step that changes
        any of them counts the record once, so `changed` stays a count of documents."""
        before = Counter(self.changed)
        out = tuple(self(p) for p in parts)
        for step, n in self.changed.items():
            if n > before[step]:
                self.changed[step] = before[step] + 1
        return out
