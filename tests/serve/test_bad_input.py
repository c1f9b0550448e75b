"""Bad input gets a 4xx in OpenAI's error format, never a 500; auth; safetensors only; no paths."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainforge.errors import UserError


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return body


@pytest.mark.parametrize("payload, param", [
    ({"prompt": "hi", "temperature": 5}, "temperature"),
    ({"prompt": "hi", "top_p": 0}, "top_p"),
    ({"prompt": "hi", "n": 2}, "n"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 100_000}, "max_tokens"),
    ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "hi", "logprobs": 3}, "logprobs"),
    ({"max_tokens": 3}, "prompt"),
    ({"prompt": "hi", "model": "../../etc/passwd"}, "model"),
    ({"prompt": "hi", "seed": 2**70}, "seed"),
    ({"prompt": 123}, "prompt"),
])
def test_bad_completion_parameters_are_400s(llama_server, payload, param):
    url, _ = llama_server
    r = httpx.post(f"{url}/v1/completions", json=payload)
    assert r.status_code in (400, 404)
    assert _error(r, r.status_code)["param"] == param


def test_malformed_json_unknown_model_long_prompt_big_body(llama_server, llama_dir):
    url, state = llama_server
    assert httpx.post(f"{url}/v1/completions", json={"prompt": "", "max_tokens": 2}).status_code == 200  # starts from BOS
    body = _error(httpx.post(f"{url}/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}), 400)
    assert "JSON" in body["message"]
    assert _error(httpx.post(f"{url}/v1/chat/completions", json={"messages": []}), 400)["param"] == "messages"
    assert _error(httpx.post(f"{url}/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}), 404)["code"] == "model_not_found"
    long_prompt = "hello " * (state.cfg.limits.max_prompt_tokens + 10)
    assert _error(httpx.post(f"{url}/v1/completions", json={"prompt": long_prompt}), 400)["code"] == "context_length_exceeded"
    huge = "x" * (state.cfg.limits.max_body_bytes + 1)
    assert _error(httpx.post(f"{url}/v1/completions", json={"prompt": huge}), 413)["code"] == "request_too_large"
    chunked = httpx.post(f"{url}/v1/completions", content=iter([b'{"prompt": "', huge.encode(), b'"}']))
    assert _error(chunked, 413)["code"] == "request_too_large"
    assert _error(httpx.post(f"{url}/v1/classify", json={"input": "x"}), 400)["param"] == "model"
    assert _error(httpx.post(f"{url}/v1/feedback", json={"id": "nope", "label": "x"}), 404)["code"] == "response_not_found"
    assert _error(httpx.get(f"{url}/v1/files"), 404)["type"] == "not_found_error"
    # the official client surfaces these as its typed errors
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=llama_dir.name, prompt="hi", temperature=3)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="hi")
    metrics = httpx.get(f"{url}/metrics").text
    assert 'status="500"' not in metrics


def test_bearer_token_auth(llama_dir):
    from tests.serve.servers import start_server

    server, _ = start_server(str(llama_dir), api_key="s3cret")
    try:
        url = server.url
        assert _error(httpx.get(f"{url}/v1/models"), 401)["code"] == "invalid_api_key"
        assert _error(httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert ok.completions.create(model=llama_dir.name, prompt="hi", max_tokens=2).usage.completion_tokens >= 1
    finally:
        server.stop()


def test_non_loopback_needs_a_key():
    from trainforge.serve.runner import require_key_off_loopback

    require_key_off_loopback("127.0.0.1", None, "TRAINFORGE_API_KEY")
    require_key_off_loopback("::1", None, "TRAINFORGE_API_KEY")
    require_key_off_loopback("0.0.0.0", "k", "TRAINFORGE_API_KEY")
    with pytest.raises(UserError, match="TRAINFORGE_API_KEY"):
        require_key_off_loopback("0.0.0.0", None, "TRAINFORGE_API_KEY")


def test_only_safetensors_are_loaded(tmp_path, classifier_dir):
    import shutil

    from trainforge.serve.engine import check_model_dir

    pickled = tmp_path / "pickled"
    shutil.copytree(classifier_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(UserError, match="pytorch_model.bin"):
        check_model_dir(pickled)
    with pytest.raises(UserError, match="config.json"):
        check_model_dir(tmp_path)


def test_cli_serve_refuses_public_bind_without_key(monkeypatch, classifier_dir, capsys):
    from trainforge.cli import main

    monkeypatch.delenv("TRAINFORGE_API_KEY", raising=False)
    assert main(["serve", str(classifier_dir), "--host", "0.0.0.0"]) == 2
    assert "TRAINFORGE_API_KEY" in capsys.readouterr().err


_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8), st.lists(st.text(max_size=4), max_size=5), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
_fields = st.sampled_from(["prompt", "messages", "model", "max_tokens", "temperature", "top_p", "seed", "stop", "stream",
                           "stream_options", "n", "input", "id", "label", "logit_bias", "x"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_fields, _values, max_size=5), path=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/feedback"]))
def test_no_body_gives_a_500(llama_server, body, path):
    url, _ = llama_server
    # json.dumps writes NaN/Infinity literals (httpx's json= refuses them): the server must cope with those too
    r = httpx.post(f"{url}{path}", content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code < 500, (body, r.text)
