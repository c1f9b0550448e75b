"""The Label Studio ML-backend contract, served beside the OpenAI API, so a project pulls pre-annotations
from a run's classifier directly (Settings → Model → Connect model → this server's URL).

    GET  /health    {"status": "UP", "model_dir": …, "v2": true}                       Label Studio's liveness probe
    POST /setup     {"project": "1.1700000000", "schema": "<View>…</View>", "hostname", "access_token", …}
                    → {"model_version": …}   (the schema is checked against the model's labels and remembered)
    POST /predict   {"tasks": [{"id", "data": {"text": …}}, …], "project": …, "label_config": "<View>…", "params": {…}}
                    → {"results": [{"model_version", "score", "result": [{"from_name", "to_name", "type": "choices",
                                                                         "value": {"choices": [label]}}]}, …],
                       "model_version": …}
    POST /webhook   {"action": "ANNOTATION_CREATED", "annotation": {…}, "task": {…}, "project": {…}} → 201
                    an annotation is scored against the served model's answer, as /v1/feedback would: the live
                    accuracy the canary gates read. (No training is started from a webhook: retraining is a run.)

from_name/to_name come from the project's labelling config (the request's, else the one /setup saw, else the
names `trainforge label queue` writes), so the pre-annotations show in the project they were made for.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from trainforge.errors import UserError
from trainforge.label.config import LabelConfig
from trainforge.label.studio import ChoiceSchema, parse_labelling_config, prediction
from trainforge.serve.protocol import APIError


def label_studio_router(state, classify) -> APIRouter:
    """`classify(texts, t0) -> (served, [{label: p}], tokens)` is the app's own batched path (app.classify_on_any)."""
    router = APIRouter()
    schemas: dict[str, ChoiceSchema] = {}  # project → the labelling config /setup or /predict brought
    default = LabelConfig()

    def classifier():
        served = state.router.pick()
        if served.engine.kind != "classifier":
            raise APIError(400, f"`{state.model_name}` generates text; the Label Studio backend serves classifiers", "model")
        return served

    def schema_for(project, label_config: str | None, labels: list[str]) -> ChoiceSchema:
        if label_config:
            try:
                schema = parse_labelling_config(label_config, "label_config")
            except UserError as e:
                raise APIError(400, str(e), "label_config") from None
            missing = sorted(set(labels) - set(schema.labels))
            if schema.labels and missing:
                raise APIError(400, f"label_config: the <Choices name={schema.from_name!r}> has no <Choice> for the "
                                    f"model's labels {missing}; add them, or its predictions cannot show", "label_config")
            schemas[str(project)] = schema
            return schema
        return schemas.get(str(project)) or ChoiceSchema(default.from_name, default.to_name, tuple(labels), default.text_key)

    async def body_of(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise APIError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object")
        return body

    @router.get("/health")
    async def health():
        return {"status": "UP", "model_dir": str(getattr(state.source, "path", None) or state.model_name), "v2": True}

    @router.post("/setup")
    async def setup(request: Request):
        body = await body_of(request)
        served = classifier()
        schema_for(body.get("project"), body.get("schema") or body.get("label_config"), served.engine.labels)
        return {"model_version": served.version}

    @router.post("/predict")
    async def predict(request: Request):
        body = await body_of(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise APIError(400, "`tasks` must be a list of Label Studio tasks ({\"data\": {…}})", "tasks")
        served = classifier()
        schema = schema_for(body.get("project"), body.get("label_config"), served.engine.labels)
        texts = []
        for k, t in enumerate(tasks):
            text = (t.get("data") or {}).get(schema.text_key)
            if not isinstance(text, str) or not text:
                raise APIError(400, f"tasks[{k}].data.{schema.text_key}: no text to classify (the <Text> reads "
                                    f"${schema.text_key})", "tasks")
            texts.append(text)
        if not texts:
            return {"results": [], "model_version": served.version}
        served, probs, _ = await classify(texts, time.perf_counter())
        return {"results": [prediction(p, schema, served.version) for p in probs], "model_version": served.version}

    @router.post("/webhook")
    async def webhook(request: Request):
        body = await body_of(request)
        action = body.get("action")
        if not isinstance(action, str):
            raise APIError(400, "a Label Studio webhook carries an `action` (e.g. ANNOTATION_CREATED)", "action")
        reply = {"action": action, "status": "ok"}
        annotation, task = body.get("annotation") or {}, body.get("task") or {}
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and not annotation.get("was_cancelled"):
            served = classifier()
            project = body.get("project") or {}
            schema = schema_for(project.get("id") if isinstance(project, dict) else project,
                                project.get("label_config") if isinstance(project, dict) else None, served.engine.labels)
            chosen = [c for r in annotation.get("result") or [] if r.get("from_name") == schema.from_name
                      for c in (r.get("value") or {}).get("choices") or []]
            text = (task.get("data") or {}).get(schema.text_key)
            if len(chosen) == 1 and isinstance(text, str) and text:
                served, probs, _ = await classify([text], time.perf_counter())
                answer = max(probs[0], key=probs[0].get)
                correct = answer == chosen[0]
                served.stats.feedback += 1
                served.stats.correct += int(correct)
                state.metrics.feedback_accuracy.labels(state.model_name, served.version).set(served.stats.accuracy)
                state.metrics.feedback.labels(state.model_name, served.version, str(correct).lower()).inc()
                reply.update({"label": chosen[0], "model_label": answer, "correct": correct, "model_version": served.version})
        return JSONResponse(reply, status_code=201)

    return router
