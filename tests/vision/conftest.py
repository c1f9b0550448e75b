"""Tiny image fixtures: real digits (the built-in's first images) as data URLs, small enough for a CPU second."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digit_rows() -> list[dict]:
    from trainforge.vision.digits import digits_records

    rows = []
    for r in digits_records():
        rows.append({"id": r["id"], "image": r["image"], "label": r["label"]})
        if len(rows) == 60:
            break
    return rows
