"""/metrics after known traffic: names like vLLM's, counts that add up to what the clients saw."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def _samples(url: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def test_metrics_count_known_traffic(llama_dir, openai_client):
    from tests.serve.servers import start_server

    server, state = start_server(str(llama_dir))
    try:
        url, client = server.url, openai_client(server.url)
        usages, generated = [], 0
        for i in range(3):
            r = client.completions.create(model=llama_dir.name, prompt=f"hello {i}", max_tokens=4, temperature=0)
            usages.append(r.usage)
        stream = client.chat.completions.create(model=llama_dir.name, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True})
        usages.append([c for c in stream][-1].usage)
        for _ in range(2):
            httpx.post(f"{url}/v1/completions", json={"prompt": "x", "temperature": 9})
        httpx.post(f"{url}/v1/completions", json={"prompt": "x", "model": "other"})

        s = _samples(url)
        version = state.router.champion.version
        model = {"model_name": llama_dir.name, "model_version": version}
        assert _total(s, "trainforge:requests_total", endpoint="/v1/completions", status="200") == 3
        assert _total(s, "trainforge:requests_total", endpoint="/v1/chat/completions", status="200") == 1
        assert _total(s, "trainforge:requests_total", endpoint="/v1/completions", status="400") == 2
        assert _total(s, "trainforge:requests_total", endpoint="/v1/completions", status="404") == 1
        assert _total(s, "trainforge:request_success_total", **model) == 4
        assert _total(s, "trainforge:prompt_tokens_total", **model) == sum(u.prompt_tokens for u in usages)
        generated = sum(u.completion_tokens for u in usages)
        assert _total(s, "trainforge:generation_tokens_total", **model) == generated
        assert _total(s, "trainforge:e2e_request_latency_seconds_count", **model) == 4
        assert _total(s, "trainforge:time_to_first_token_seconds_count", **model) == 4
        # every token after the first of each request is one inter-token gap
        assert _total(s, "trainforge:inter_token_latency_seconds_count", **model) == generated - 4
        assert _total(s, "trainforge:num_requests_running", **model) == 0
        assert _total(s, "trainforge:num_requests_waiting", **model) == 0
        assert _total(s, "trainforge:model_info", **model, role="model", kind="generator") == 1
    finally:
        server.stop()
