"""Shared fixtures: tiny labelled data and a tiny config, so every test runs on CPU in seconds."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests explore, but CI must be deterministic: the same examples on every run.
settings.register_profile("trainforge", derandomize=True, print_blob=True)
settings.load_profile("trainforge")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["很好", "喜欢", "满意", "推荐", "不错", "精彩", "值得", "快乐"]
NEGATIVE = ["很差", "失望", "糟糕", "退货", "难用", "无聊", "后悔", "生气"]
FILLER = list("这个东西我们买了书店酒房间服务质量价格物流包装内容")


def make_reviews(n: int, seed: int = 0) -> list[dict]:
    """Synthetic two-class reviews: the label is carried by a sentiment word among filler characters."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.choices(FILLER, k=rng.randint(4, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": "".join(words) + f"{i}", "label": label})
    return rows


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests run only where torch sees a CUDA device; elsewhere they skip and say why."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    reason = "needs a CUDA GPU: " + ("this torch build is CPU-only" if torch.version.cuda is None else "torch sees no CUDA device")
    for item in gpu_tests:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Every test but a `gpu` one runs on the CPU, also on a machine with a GPU: `device: auto` and the
    distributed tests then pick the CPU and gloo, so the suite's exact numbers hold there too. Child
    processes (torchrun, kill -9 workers) see no GPU through CUDA_VISIBLE_DEVICES."""
    if request.node.get_closest_marker("gpu") is not None:
        return
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def reviews_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.jsonl"
    rows = make_reviews(240)
    rows += rows[:20]  # exact duplicates for the dedup step
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.write("{not json\n")  # one unreadable line → quarantine
    return path


def tiny_config_dict(data_path: Path, runs_dir: Path, tracking: bool = False) -> dict:
    return {
        "name": "tiny",
        "seed": 7,
        "runs_dir": str(runs_dir),
        "tracking": {"enabled": tracking},
        "data": {"sources": [{"path": str(data_path)}], "split": {"val": 0.2, "test": 0.2}},
        "train": {
            "model": "encoder-tiny",
            "tokenizer": {"vocab_size": 300, "min_frequency": 1},
            "max_length": 32,
            "max_steps": 6,
            "batch_size": 16,
            "lr": 1.0e-3,
            "threads": 1,
        },
        "eval": {"baseline": "tfidf-lr"},
    }


@pytest.fixture
def tiny_config(tmp_path: Path, reviews_jsonl: Path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(reviews_jsonl, tmp_path / "runs")), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch):
    """`mlflow.set_tracking_uri` also exports $MLFLOW_TRACKING_URI, which our default reads: without
    this, one test's store would leak into the next test's runs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    import sys

    if "mlflow" in sys.modules:
        mlflow = sys.modules["mlflow"]
        while mlflow.active_run() is not None:
            mlflow.end_run()
