"""`trainforge serve` on an image classifier: /v1/classify with data URLs, an OpenAI chat message holding an
image_url, and bad payloads answered with a clear 400 (never a 500)."""

from __future__ import annotations

import base64

import httpx
import pytest


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, digit_rows):
    import torch

    from tests.serve.servers import start_server
    from trainforge.models.presets import resolve_model
    from trainforge.tasks import ModelSpec, write_model_info
    from trainforge.tasks.image_classification import ImageClassificationTask
    from trainforge.train.config import TrainConfig

    cfg = TrainConfig(task="image_classification", model="vit-tiny", image={"size": 16})
    task = ImageClassificationTask.for_training(cfg, digit_rows)
    processor = task.make_processor(cfg, resolve_model("vit-tiny"), digit_rows)
    torch.manual_seed(0)
    spec = ModelSpec("vit-tiny", 0, 0.0, overrides=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=32, patch_size=4))
    model = task.build_model(spec, processor)
    out = tmp_path_factory.mktemp("vit") / "model"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_model_info(out, task.model_info(spec, model, "full", adapter=False))
    server, state = start_server(str(out))
    yield server.url, task.labels
    server.stop()


def test_classify_answers_images_with_probabilities(image_server, digit_rows):
    url, labels = image_server
    r = httpx.post(f"{url}/v1/classify", json={"image": [digit_rows[0]["image"], digit_rows[1]["image"]]}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and all(d["label"] in labels for d in data)
    assert sum(data[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_chat_message_with_an_image_url_gets_the_label(image_server, digit_rows):
    url, labels = image_server
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "which digit?"},
                                                      {"type": "image_url", "image_url": {"url": digit_rows[2]["image"]}}]}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] in labels


@pytest.mark.parametrize("ref, code", [
    ("data:image/png;base64,%%%not-base64%%%", "invalid_data_url"),
    ("data:image/png;base64," + base64.b64encode(b"these bytes are no image").decode(), "corrupt_image"),
    ("https://example.com/a.png", "remote_image"),
    ("/etc/passwd", "invalid_image"),
])
def test_bad_image_payloads_are_clear_400s(image_server, ref, code):
    url, _ = image_server
    for path, body in (("/v1/classify", {"image": ref}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
                           {"type": "image_url", "image_url": {"url": ref}}]}]})):
        r = httpx.post(f"{url}{path}", json=body, timeout=60)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == code and err["message"], err


def test_text_input_to_an_image_model_is_a_400(image_server):
    url, _ = image_server
    r = httpx.post(f"{url}/v1/classify", json={"input": "a seven"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
