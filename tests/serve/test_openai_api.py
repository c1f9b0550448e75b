"""The OpenAI client round trip against a real server on 127.0.0.1: completions, chat, streaming,
usage, stop sequences, seeds; and batched KV-cache decoding against transformers' generate()."""

from __future__ import annotations

import json

import httpx


def test_models_lists_the_served_name(llama_server, openai_client, llama_dir):
    url, _ = llama_server
    assert [m.id for m in openai_client(url).models.list().data] == [llama_dir.name]


def test_completion_with_usage(llama_server, openai_client, llama_dir):
    url, _ = llama_server
    r = openai_client(url).completions.create(model=llama_dir.name, prompt="hello world", max_tokens=6, temperature=0)
    choice = r.choices[0]
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert choice.finish_reason in ("length", "stop")
    assert r.usage.prompt_tokens > 0 and 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_greedy_matches_transformers_generate(llama_dir):
    """Parity: our batched, left-padded KV-cache decoding == generate() one prompt at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainforge.serve.batching import GenRequest, generate_batch
    from trainforge.serve.engine import load_engine

    engine = load_engine(llama_dir)
    prompts = ["hello", "the quick brown fox jumps over", "房间很干净，服务也很好", "kv"]
    got: dict[int, list] = {i: [] for i in range(len(prompts))}
    requests = [GenRequest(engine.encode(p), max_tokens=10, temperature=0, emit=got[i].append) for i, p in enumerate(prompts)]
    generate_batch(engine, requests)
    model = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(llama_dir)
    for i, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        ref = model.generate(**ids, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)[0, ids["input_ids"].shape[1]:]
        want = tok.decode(ref, skip_special_tokens=True)
        assert "".join(e[1] for e in got[i] if e[0] == "token") == want
        generated = [t for t in ref.tolist() if t != tok.eos_token_id]
        assert got[i][-1] == ("done", "length" if len(generated) == 10 else "stop", len(generated))


def test_chat_stream_equals_non_stream_and_ends_with_done(llama_server, openai_client, llama_dir):
    url, _ = llama_server
    client = openai_client(url)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    full = client.chat.completions.create(model=llama_dir.name, messages=messages, max_tokens=8, temperature=0)
    assert full.object == "chat.completion" and full.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model=llama_dir.name, messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == full.usage.completion_tokens
    assert usage.prompt_tokens == full.usage.prompt_tokens
    # the raw stream: server-sent events ending in data: [DONE]
    with httpx.stream("POST", f"{url}/v1/completions", json={"prompt": "hi", "max_tokens": 3, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["object"] == "text_completion"


def test_stop_sequence_cuts_the_text(llama_server, openai_client, llama_dir):
    url, _ = llama_server
    client = openai_client(url)
    base = client.completions.create(model=llama_dir.name, prompt="the quick", max_tokens=12, temperature=0)
    text = base.choices[0].text
    stop = next(text[i : i + 2] for i in range(2, len(text) - 2) if text[i : i + 2].strip() and "\ufffd" not in text[i : i + 2])
    cut = client.completions.create(model=llama_dir.name, prompt="the quick", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=llama_dir.name, prompt="the quick", max_tokens=12, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text[: text.index(stop)]


def test_seed_makes_sampling_reproducible(llama_server, openai_client, llama_dir):
    url, _ = llama_server
    client = openai_client(url)

    def sample(seed):
        return client.completions.create(model=llama_dir.name, prompt="hello", max_tokens=10, temperature=1.0,
                                         top_p=0.9, seed=seed).choices[0].text

    assert sample(7) == sample(7)
    assert len({sample(s) for s in range(4)}) > 1


def test_concurrent_requests_are_batched(llama_server, llama_dir):
    """Requests sent together share forward passes, and each still gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    from trainforge.serve.engine import load_engine

    url, state = llama_server
    batch_sizes = []
    batcher = state.router.champion.batcher
    original = batcher._run_batch
    batcher._run_batch = lambda reqs: (batch_sizes.append(len(reqs)), original(reqs))
    try:
        prompts = [f"prompt number {i}" for i in range(8)]
        with httpx.Client(timeout=60) as c, ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda p: c.post(f"{url}/v1/completions", json={"prompt": p, "max_tokens": 5, "temperature": 0}).json()["choices"][0]["text"], prompts))
    finally:
        batcher._run_batch = original
    assert max(batch_sizes) > 1
    engine = load_engine(llama_dir)
    for p, text in zip(prompts[:2], texts[:2]):  # batched answers equal unbatched greedy decoding
        got = []
        from trainforge.serve.batching import GenRequest, generate_batch

        generate_batch(engine, [GenRequest(engine.encode(p), 5, 0.0, emit=got.append)])
        assert text == "".join(e[1] for e in got if e[0] == "token")
