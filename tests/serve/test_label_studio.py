"""The Label Studio ML-backend contract on `trainforge serve`, with the request bodies Label Studio sends.

label-studio-ml (the backend SDK) is not a test dependency: under our constraints it would pin Flask 1.1 and
Jinja2 3.0 (below what transformers' chat templates and mlflow need). The bodies below follow its api.py and
Label Studio's ml/api_connector.py: /setup {project "<id>.<created ts>", schema, hostname, access_token,
model_version}; /predict {tasks, model_version, project, label_config, params {login, password, context}};
/webhook {action, annotation, project, task}.
"""

import httpx
import pytest

from tests.serve.servers import start_server
from tests.serve.tiny_models import rule_label

CONFIG = ('<View><Text name="review" value="$comment"/><Choices name="polarity" toName="review" choice="single">'
          '<Choice value="positive"/><Choice value="negative"/><Choice value="neutral"/></Choices></View>')


@pytest.fixture(scope="module")
def server(classifier_dir):
    server, state = start_server(str(classifier_dir))
    yield server.url, state
    server.stop()


def test_health_and_setup(server):
    url, state = server
    h = httpx.get(f"{url}/health", timeout=30).json()
    assert h["status"] == "UP" and h["v2"] is True
    r = httpx.post(f"{url}/setup", json={"project": "3.1716206582", "schema": CONFIG, "hostname": "http://localhost:8080",
                                         "access_token": "token", "model_version": None, "extra_params": ""}, timeout=30)
    assert r.status_code == 200 and r.json() == {"model_version": state.router.pick().version}


def test_predict_answers_with_the_projects_names(server):
    url, state = server
    texts = ["房间很干净", "hello world", "质量太差"]
    body = {"tasks": [{"id": 10 + k, "data": {"comment": t}, "meta": {}, "annotations": [], "predictions": []}
                      for k, t in enumerate(texts)],
            "model_version": None, "project": "3.1716206582", "label_config": CONFIG,
            "params": {"login": None, "password": None, "context": None}}
    r = httpx.post(f"{url}/predict", json=body, timeout=60)
    assert r.status_code == 200
    out = r.json()
    version = state.router.pick().version
    assert out["model_version"] == version and len(out["results"]) == 3
    direct = httpx.post(f"{url}/v1/classify", json={"input": texts}, timeout=60).json()["data"]
    for res, d in zip(out["results"], direct):
        (item,) = res["result"]
        assert (item["from_name"], item["to_name"], item["type"]) == ("polarity", "review", "choices")
        assert item["value"] == {"choices": [d["label"]]}  # the same answer as the OpenAI-side endpoint
        assert res["score"] == pytest.approx(max(d["probabilities"].values()), abs=1e-5) and res["model_version"] == version
    # a later /predict for the same project without a label_config reuses the names /setup or /predict saw
    again = httpx.post(f"{url}/predict", json={"tasks": body["tasks"][:1], "project": "3.1716206582"}, timeout=60).json()
    assert again["results"][0]["result"][0]["from_name"] == "polarity"


def test_predict_refuses_what_cannot_show(server):
    url, _ = server
    missing = CONFIG.replace('<Choice value="negative"/>', "")
    r = httpx.post(f"{url}/predict", json={"tasks": [{"data": {"comment": "x"}}], "label_config": missing}, timeout=30)
    assert r.status_code == 400 and "negative" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/predict", json={"tasks": [{"data": {"other": "x"}}], "label_config": CONFIG}, timeout=30)
    assert r.status_code == 400 and "data.comment" in r.json()["error"]["message"]


def test_webhook_scores_an_annotation_as_feedback(server):
    url, state = server
    served = state.router.pick()
    before = served.stats.feedback
    text = "服务很好"
    body = {"action": "ANNOTATION_CREATED",
            "annotation": {"id": 5, "completed_by": 1, "was_cancelled": False, "task": 11,
                           "result": [{"from_name": "polarity", "to_name": "review", "type": "choices",
                                       "value": {"choices": [rule_label(text)]}}]},
            "project": {"id": 3, "label_config": CONFIG}, "task": {"id": 11, "data": {"comment": text}}}
    r = httpx.post(f"{url}/webhook", json=body, timeout=30)
    assert r.status_code == 201
    out = r.json()
    assert out["action"] == "ANNOTATION_CREATED" and out["label"] == rule_label(text)
    assert out["correct"] == (out["model_label"] == rule_label(text)) and served.stats.feedback == before + 1
    r = httpx.post(f"{url}/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}}, timeout=30)
    assert r.status_code == 201 and r.json() == {"action": "PROJECT_UPDATED", "status": "ok"}
