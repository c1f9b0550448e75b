"""Dynamic batching: concurrent requests share forward passes, on one model thread.

    HTTP handlers (asyncio) ──submit──▶ queue ──▶ model thread: take the first request, wait up to
    max_wait_ms for more (up to max_batch_size), run them as one batch, stream events back.

Generation runs a padded batch with a KV cache: one prefill pass over the left-padded prompts,
then one single-token forward per step that reuses the cached keys/values, so step t costs O(t)
attention instead of re-encoding the whole sequence. Each row has its own sampling settings
(temperature, top_p, seed → its own torch.Generator), its own stop sequences and max_tokens;
a finished row stops emitting while the rest of its batch carries on. The padded batch, the KV cache
and each row's generator live on the model's device; only the sampled token ids come back to the
host (the stop strings are checked on text). Trade-off: this is static
batching per wave (a request arriving mid-wave waits for the next wave), which keeps the code to
one readable loop; continuous batching would cut that wait.

Events go back through `emit(event)`, called on the model thread; the HTTP side turns them into
asyncio queue items with loop.call_soon_threadsafe.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

_STOP = object()


class EngineRetired(Exception):
    """The engine was swapped out before this request reached it; submit to the current one."""


@dataclass
class GenRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    emit: Callable[[tuple], None] = lambda event: None
    """Receives ("token", text_delta, new_tokens) — new_tokens 0 for a final flush of held-back text —
    then ("done", finish_reason, n_generated) or ("error", exc)."""
    cancelled: bool = False


@dataclass
class ClassifyRequest:
    texts: list[str]
    emit: Callable[[tuple], None] = lambda event: None
    """Receives ("done", [ {label: p}, … ]) or ("error", exc)."""
    cancelled: bool = False


class Batcher:
    """A queue and one worker thread that runs `run_batch` on groups of requests."""

    def __init__(self, run_batch: Callable[[list], None], max_batch_size: int, max_wait_ms: float, name: str):
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.running = 0
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, request) -> None:
        with self._lock:  # no request may slip in behind the close sentinel
            if self._closed:
                raise EngineRetired()
            self._queue.put(request)

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; the ones already queued still run (drain), then the thread ends."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if wait:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop_after = [first], False
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            batch = [r for r in batch if not r.cancelled]
            self.running = len(batch)
            try:
                if batch:
                    self._run_batch(batch)
            except Exception as e:  # noqa: BLE001 — reported to each waiting request, the thread lives on
                for r in batch:
                    r.emit(("error", e))
            finally:
                self.running = 0
            if stop_after:
                return


# --------------------------------------------------------------------------- classification


def classify_batch(engine, requests: list[ClassifyRequest]) -> None:
    texts = [t for r in requests for t in r.texts]
    try:
        probs = engine.classify(texts)
    except Exception:  # noqa: BLE001 — one bad request must not fail its batch-mates: run each alone
        if len(requests) == 1:
            raise
        for r in requests:
            try:
                r.emit(("done", engine.classify(r.texts)))
            except Exception as e:  # noqa: BLE001
                r.emit(("error", e))
        return
    i = 0
    for r in requests:
        r.emit(("done", probs[i : i + len(r.texts)]))
        i += len(r.texts)


# --------------------------------------------------------------------------- generation


def sample_next(logits, temperature: float, top_p: float, generator):
    """One token id from a (vocab,) logits row: greedy at temperature 0, else nucleus sampling."""
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_p[outside] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class _Row:
    """Decode state of one request inside a batch."""

    def __init__(self, req: GenRequest, engine, device=None):
        """device: the model's (None: the CPU)."""
        import random

        import torch

        self.req, self.engine = req, engine
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.done = False
        # on the model's device: torch.multinomial samples there (a CUDA generator draws other numbers than a CPU one)
        self.generator = torch.Generator(device=device or "cpu").manual_seed(
            req.seed if req.seed is not None else random.getrandbits(63))
        self.hold = max((len(s) for s in req.stop), default=1) - 1  # chars held back: may start a stop string

    def push(self, token: int) -> None:
        if token in self.engine.eos_ids:
            return self.finish("stop")
        self.ids.append(token)
        text = self.engine.decode(self.ids)
        cut = min((i for i in (text.find(s) for s in self.req.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            self.req.emit(("token", "", 1))
            return self.finish("stop", text[:cut])
        safe = len(text) - self.hold
        while safe > self.sent and text[safe - 1] == "\ufffd":  # an unfinished multi-byte character
            safe -= 1
        self.req.emit(("token", text[self.sent : safe] if safe > self.sent else "", 1))
        self.sent = max(self.sent, safe)
        if len(self.ids) >= self.req.max_tokens:
            self.finish("length")

    def finish(self, reason: str, text: str | None = None) -> None:
        text = self.engine.decode(self.ids) if text is None else text
        if len(text) > self.sent:
            self.req.emit(("token", text[self.sent :], 0))
        self.done = True
        self.req.emit(("done", reason, len(self.ids)))


def _cache_kwargs(model, out) -> dict:
    """The KV cache of the last forward, under the name this transformers version uses
    (`cache` since 5.x, `past_key_values` before)."""
    import inspect

    if "cache" in inspect.signature(model.forward).parameters and getattr(out, "cache", None) is not None:
        return {"cache": out.cache}
    return {"past_key_values": out.past_key_values}


def generate_batch(engine, requests: list[GenRequest]) -> list[list[int]]:
    """Decode a batch with a KV cache: prefill the left-padded prompts, then one token per step.
    Returns each request's generated token ids (without the end-of-sequence token; GRPO rollouts read them)."""
    import torch

    model, pad, device = engine.model, engine.pad_id, engine.device
    rows = [_Row(r, engine, device) for r in requests]
    width = max(len(r.prompt_ids) for r in requests)
    batch = len(requests)
    input_ids = torch.full((batch, width), pad, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, r in enumerate(requests):  # left padding keeps every row's last prompt token in the last column
        input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
        mask[i, width - len(r.prompt_ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)  # built on the host, one copy each
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): pads don't shift the real tokens' positions
    steps = max(r.max_tokens for r in requests)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
        for _ in range(steps):
            logits = out.logits[:, -1, :]  # (B, vocab)
            next_ids = [pad] * batch
            for i, row in enumerate(rows):
                if row.done or row.req.cancelled:
                    row.done = True
                    continue
                token = sample_next(logits[i], row.req.temperature, row.req.top_p, row.generator)
                next_ids[i] = token
                row.push(token)
            if all(row.done for row in rows):
                break
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=torch.long, device=device)], dim=1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=torch.tensor(next_ids, dtype=torch.long, device=device)[:, None], attention_mask=mask,
                        position_ids=positions, use_cache=True, **_cache_kwargs(model, out))
    for row in rows:
        if not row.done:
            row.finish("length")
    return [row.ids for row in rows]
