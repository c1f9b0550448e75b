"""Prometheus metrics at /metrics, named like vLLM's so existing dashboards need only a prefix swap.

    trainforge:requests_total{endpoint,status}                   every HTTP answer, by status code
    trainforge:request_success_total{finished_reason}             vllm:request_success_total
    trainforge:e2e_request_latency_seconds                        vllm:e2e_request_latency_seconds
    trainforge:time_to_first_token_seconds                        vllm:time_to_first_token_seconds
    trainforge:inter_token_latency_seconds                        vllm:inter_token_latency_seconds
    trainforge:prompt_tokens_total / generation_tokens_total      vllm:prompt_tokens_total / …
    trainforge:num_requests_running / num_requests_waiting        vllm:num_requests_running / …
    trainforge:model_info{model_name,model_version,role,kind}     1 per loaded version
    trainforge:drift_psi / drift_kl / drift_detected{feature}     live inputs vs the training profile
    trainforge:feedback_total / feedback_accuracy                 labelled outcomes from /v1/feedback
    trainforge:rollout_transitions_total{action}                  alias moves made by the canary gates

Model series carry model_name and model_version labels. Each app has its own CollectorRegistry,
so several servers (tests, canaries) can live in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no *_created series (vLLM does the same): half the scrape size

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MODEL = ("model_name", "model_version")


class ServeMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("trainforge:requests", "HTTP requests answered, by endpoint and status code",
                                ("endpoint", "status"), registry=r)
        self.success = Counter("trainforge:request_success", "Finished model requests by finish reason",
                               (*MODEL, "finished_reason"), registry=r)
        self.e2e = Histogram("trainforge:e2e_request_latency_seconds", "End-to-end model request latency",
                             MODEL, buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("trainforge:time_to_first_token_seconds", "Time to the first generated token",
                              MODEL, buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("trainforge:inter_token_latency_seconds", "Time between consecutive generated tokens",
                             MODEL, buckets=TOKEN_BUCKETS, registry=r)
        self.prompt_tokens = Counter("trainforge:prompt_tokens", "Prompt tokens processed", MODEL, registry=r)
        self.generation_tokens = Counter("trainforge:generation_tokens", "Tokens generated", MODEL, registry=r)
        self.running = Gauge("trainforge:num_requests_running", "Requests in the batch being computed", MODEL, registry=r)
        self.waiting = Gauge("trainforge:num_requests_waiting", "Requests queued for the next batch", MODEL, registry=r)
        self.model_info = Gauge("trainforge:model_info", "1 for each loaded model version",
                                (*MODEL, "role", "kind"), registry=r)
        self.drift_psi = Gauge("trainforge:drift_psi", "Population stability index, live window vs reference",
                               (*MODEL, "feature"), registry=r)
        self.drift_kl = Gauge("trainforge:drift_kl", "Smoothed KL(live || reference)", (*MODEL, "feature"), registry=r)
        self.drift_detected = Gauge("trainforge:drift_detected", "1 when the feature's PSI or KL is over its threshold",
                                    (*MODEL, "feature"), registry=r)
        self.drift_window = Gauge("trainforge:drift_window_size", "Live inputs in the drift window", MODEL, registry=r)
        self.feedback = Counter("trainforge:feedback", "Labelled outcomes received, by correctness",
                                (*MODEL, "correct"), registry=r)
        self.feedback_accuracy = Gauge("trainforge:feedback_accuracy", "Accuracy on labelled outcomes", MODEL, registry=r)
        self.transitions = Counter("trainforge:rollout_transitions", "Alias moves made by the server", ("action",), registry=r)

    def set_models(self, served: list) -> None:
        """Refresh per-version gauges from the currently loaded versions (called at scrape time)."""
        self.model_info.clear()
        self.running.clear()
        self.waiting.clear()
        for m in served:
            labels = (m.name, m.version)
            self.model_info.labels(*labels, m.role, m.engine.kind).set(1)
            self.running.labels(*labels).set(m.batcher.running)
            self.waiting.labels(*labels).set(m.batcher.waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
