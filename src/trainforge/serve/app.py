"""The OpenAI-compatible HTTP API (FastAPI): completions, chat, classify, feedback, health, metrics.

Classifiers answer chat and completions too: the reply is the predicted label (the last user
message, or the prompt, is the text classified), so any OpenAI client can call them; /v1/classify
also returns the probabilities. Every error is OpenAI's {"error": {...}} body with a 4xx status
unless the fault is ours (5xx).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trainforge.serve.batching import ClassifyRequest, EngineRetired, GenRequest
from trainforge.serve.guard import Guard
from trainforge.serve.protocol import (APIError, ChatRequest, ClassifyBody, CompletionRequest, FeedbackBody,
                                       error_body)
from trainforge.serve.rollout import ServedModel
from trainforge.serve.server import ServerState
from trainforge.vision.serve import decode_request_images

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(state: ServerState):
    @asynccontextmanager
    async def lifespan(app):
        await state.start()
        yield
        await state.stop()  # uvicorn has already let in-flight HTTP requests finish (graceful drain)

    app = FastAPI(title="trainforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.trainforge = state
    _install_error_handlers(app)
    limits = state.cfg.limits

    def check_model(requested: str | None) -> None:
        if requested is not None and requested != state.model_name:
            raise APIError(404, f"The model `{requested}` does not exist (this server serves `{state.model_name}`)",
                           "model", "model_not_found")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready", "versions": {m.role: m.version for m in state.router.served()}}

    @app.get("/metrics")
    async def metrics():
        state.metrics.set_models(state.router.served() if state.router else [])
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        created = int(time.time())
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": created,
                                            "owned_by": "trainforge"}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        check_model(body.model)
        return await answer(body, "text_completion", body.prompt, None, body.max_tokens)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        check_model(body.model)
        messages = [{"role": m.role, "content": m.text} for m in body.messages]
        user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
        if getattr(state.router.pick().engine, "input_kind", "text") == "image":  # the last user message's image
            refs = next((m.images for m in reversed(body.messages) if m.role == "user" and m.images), [])
            if len(refs) != 1:
                raise APIError(400, f"an image classifier answers one image_url part in the last user message (got {len(refs)})",
                               "messages")
            images = decode_request_images(refs, "messages.image_url")
            return await answer_with_label(body, "chat.completion", images[0], time.perf_counter(), observed="<image>")
        return await answer(body, "chat.completion", user_text, messages, body.token_budget)

    @app.post("/v1/classify")
    async def classify(body: ClassifyBody):
        check_model(body.model)
        texts = body.texts
        if getattr(state.router.pick().engine, "input_kind", "text") == "image":  # decoded before queueing: bad base64 → 400
            if texts or not body.images:
                raise APIError(400, "this model classifies images: send `image` (data URLs), not `input`", "image")
            texts = decode_request_images(body.images[: limits.max_inputs + 1], "image")
        if not texts or len(texts) > limits.max_inputs:
            raise APIError(400, f"input: send 1 to {limits.max_inputs} texts (got {len(texts)})", "input")
        served, t0 = state.router.pick(), time.perf_counter()
        if served.engine.kind != "classifier":
            raise APIError(400, f"`{state.model_name}` generates text; /v1/classify needs a classifier", "model")
        served, probs, tokens = await classify_on_any(texts, t0)
        rid = f"clf-{uuid.uuid4().hex}"
        data = []
        for i, (text, p) in enumerate(zip(texts, probs)):
            label = max(p, key=p.get)
            state.observe_input(served, text if isinstance(text, str) else "<image>", label)
            data.append({"index": i, "label": label, "probabilities": {k: round(v, 6) for k, v in p.items()}})
        state.remember_answer(rid, served, data[0]["label"] if len(data) == 1 else None)
        return {"id": rid, "object": "classification", "model": state.model_name, "model_version": served.version,
                "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackBody):
        if body.id not in state.answers:
            raise APIError(404, f"no answer with id `{body.id}` (ids are kept for the last 100,000 answers)", "id", "response_not_found")
        version, served_label = state.answers[body.id]
        if body.label is not None and served_label is not None:
            correct = body.label == served_label
        elif body.correct is not None:
            correct = body.correct
        else:
            raise APIError(400, "send `label` (for a single classification) or `correct` (true/false)", "label")
        served = state.router.by_version(version)
        if served is not None:
            served.stats.feedback += 1
            served.stats.correct += int(correct)
            state.metrics.feedback_accuracy.labels(state.model_name, version).set(served.stats.accuracy)
        state.metrics.feedback.labels(state.model_name, version, str(correct).lower()).inc()
        if served is not None and served.role == "challenger":
            await state.check_gates()
        return {"id": body.id, "correct": correct, "model_version": version}

    # ------------------------------------------------------------------------------------ helpers

    async def classify_on_any(texts: list[str], t0: float):
        """Classify on whichever version the router picks, re-picking if it was swapped out meanwhile."""
        for _ in range(5):
            served = state.router.pick()
            counts = [served.engine.count_tokens(t) for t in texts]
            if 0 in counts:
                raise APIError(400, f"input {counts.index(0)} is empty (no tokens to classify)", "input")
            tokens = sum(_checked_tokens(n, limits.max_prompt_tokens) for n in counts)
            try:
                _, events = submit(served, lambda emit: ClassifyRequest(texts, emit))
            except EngineRetired:
                continue
            kind, *rest = await events.get()
            await finish_request(served, t0, kind == "done", "stop", tokens, 0)
            if kind == "error":
                raise APIError(500, f"model error: {rest[0]}", kind="server_error")
            return served, rest[0], tokens
        raise APIError(503, "the model is being swapped; retry", kind="server_error")

    def submit(served: ServedModel, make):
        """(request, its event queue): the model thread's events land on this event loop's queue."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        request = make(lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        served.batcher.submit(request)
        return request, events

    async def finish_request(served, t0, ok, reason, prompt_tokens, generated):
        seconds = time.perf_counter() - t0
        labels = (served.name, served.version)
        m = state.metrics
        if ok:
            m.e2e.labels(*labels).observe(seconds)
            m.success.labels(*labels, reason).inc()
            m.prompt_tokens.labels(*labels).inc(prompt_tokens)
            m.generation_tokens.labels(*labels).inc(generated)
        await state.after_request(served, seconds, ok)

    async def answer(body, obj: str, text: str, messages: list | None, budget: int | None):
        t0 = time.perf_counter()
        for _ in range(5):
            served = state.router.pick()
            try:
                if served.engine.kind == "classifier":
                    return await answer_with_label(body, obj, text, t0)
                return await answer_generated(served, body, obj, text, messages, budget, t0)
            except EngineRetired:
                continue
        raise APIError(503, "the model is being swapped; retry", kind="server_error")

    async def answer_with_label(body, obj, text, t0, observed: str | None = None):
        served, probs, tokens = await classify_on_any([text], t0)
        label = max(probs[0], key=probs[0].get)
        state.observe_input(served, observed or text, label)
        rid = f"{'chatcmpl' if obj == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
        state.remember_answer(rid, served, label)
        return respond(body, obj, rid, served, [("token", label, 1), ("done", "stop", 1)], tokens)

    async def answer_generated(served, body, obj, text, messages, budget, t0):
        engine = served.engine
        prompt_ids = engine.encode(engine.chat_prompt(messages) if messages is not None else text)
        if not prompt_ids:  # an empty prompt: start from BOS, as generate() would; no BOS, nothing to condition on
            if engine.tokenizer.bos_token_id is None:
                raise APIError(400, "the prompt is empty (and this model has no BOS token to start from)", "prompt")
            prompt_ids = [engine.tokenizer.bos_token_id]
        _checked_tokens(len(prompt_ids), limits.max_prompt_tokens)
        room = engine.max_positions - len(prompt_ids)
        max_tokens = budget if budget is not None else min(limits.max_tokens, room)
        if max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}", "max_tokens")
        if max_tokens > room:
            raise APIError(400, f"This model's maximum context length is {engine.max_positions} tokens; the prompt has "
                                f"{len(prompt_ids)} and max_tokens asks for {max_tokens}", "max_tokens", "context_length_exceeded")
        request, events = submit(served, lambda emit: GenRequest(prompt_ids, max_tokens, body.temperature, body.top_p,
                                                         body.seed, body.stops, emit))
        state.observe_input(served, text, None)
        rid = f"{'chatcmpl' if obj == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
        state.remember_answer(rid, served, None)
        timed = timed_events(served, request, events, t0, len(prompt_ids))
        if body.stream:
            return respond(body, obj, rid, served, timed, len(prompt_ids))
        collected = [e async for e in timed]
        if collected[-1][0] == "error":
            raise APIError(500, f"model error: {collected[-1][1]}", kind="server_error")
        return respond(body, obj, rid, served, collected, len(prompt_ids))

    async def timed_events(served, request, events: asyncio.Queue, t0: float, prompt_tokens: int):
        """The request's events, recording TTFT, inter-token latency and the outcome as they pass."""
        labels, last, finished = (served.name, served.version), None, False
        try:
            while True:
                event = await events.get()
                now = time.perf_counter()
                if event[0] == "token" and event[2]:
                    hist = state.metrics.ttft if last is None else state.metrics.itl
                    hist.labels(*labels).observe(now - (t0 if last is None else last))
                    last = now
                if event[0] in ("done", "error"):
                    finished = True
                    ok = event[0] == "done"
                    await finish_request(served, t0, ok, event[1] if ok else "error", prompt_tokens, event[2] if ok else 0)
                yield event
                if finished:
                    return
        finally:
            if not finished:  # the client went away: free its batch row (not counted as a model failure)
                request.cancelled = True

    from trainforge.serve.label_studio import label_studio_router

    app.include_router(label_studio_router(state, classify_on_any))  # Label Studio's ML-backend contract
    return Guard(app, state)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def respond(body, obj: str, rid: str, served: ServedModel, events, prompt_tokens: int):
    """A JSON body, or (stream=true) the same answer as server-sent events ending in `data: [DONE]`."""
    created, model = int(time.time()), served.name
    if not body.stream:
        text = "".join(e[1] for e in events if e[0] == "token")
        reason = events[-1][1]
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason, "logprobs": None}
                  if obj == "chat.completion" else {"index": 0, "text": text, "finish_reason": reason, "logprobs": None})
        return {"id": rid, "object": obj, "created": created, "model": model, "system_fingerprint": served.version,
                "choices": [choice], "usage": _usage(prompt_tokens, events[-1][2])}

    chunk_obj = "chat.completion.chunk" if obj == "chat.completion" else "text_completion"
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta_text: str | None, reason: str | None, first: bool = False) -> str:
        if obj == "chat.completion":
            delta = {"role": "assistant", "content": ""} if first else ({"content": delta_text} if delta_text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": delta_text or "", "finish_reason": reason, "logprobs": None}
        payload = {"id": rid, "object": chunk_obj, "created": created, "model": model, "choices": [choice]}
        if include_usage:
            payload["usage"] = None
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def sse():
        if obj == "chat.completion":
            yield chunk(None, None, first=True)
        async for event in _aiter(events):
            if event[0] == "token" and event[1]:
                yield chunk(event[1], None)
            elif event[0] == "done":
                yield chunk(None, event[1])
                if include_usage:
                    final = {"id": rid, "object": chunk_obj, "created": created, "model": model, "choices": [],
                             "usage": _usage(prompt_tokens, event[2])}
                    yield f"data: {json.dumps(final)}\n\n"
            elif event[0] == "error":
                yield f"data: {json.dumps(error_body(f'model error: {event[1]}', 'server_error'))}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _aiter(events):
    if isinstance(events, list):
        for e in events:
            yield e
    else:
        async for e in events:
            yield e


def _checked_tokens(n: int, limit: int) -> int:
    if n > limit:
        raise APIError(400, f"the prompt has {n} tokens; this server accepts at most {limit}", "prompt",
                       "context_length_exceeded")
    return n


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = []
        for part in (str(p) for p in first.get("loc", ()) if p != "body"):
            if part in _TYPE_TAGS or "[" in part:  # pydantic names the union member it tried: not a param
                break
            loc.append(part)
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("We could not parse the JSON body of your request: " + first.get("msg", "")),
                                status_code=400)
        if first.get("type") == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {'.'.join(loc)}"
        else:
            message = f"{'.'.join(loc) or 'body'}: {first.get('msg')}"
        return JSONResponse(error_body(message, param=".".join(loc) or None), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {e.detail}", kind), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):
        return JSONResponse(error_body(f"internal error: {type(e).__name__}", "server_error"), status_code=500)
