"""What a running server holds: the loaded versions, where they came from, and the loops that
keep them current (registry polling, canary gates, drift windows, feedback).

A model source is one of
    a run directory        runs/NAME            model/ + data/train.jsonl for the drift reference
    a model directory      path/to/model        config.json + *.safetensors
    a registry alias       models:/NAME@ALIAS   follows the alias: a moved alias is hot-swapped
    a registry model       models:/NAME         champion, plus challenger as a canary
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import UserError
from trainforge.serve import drift as drift_mod
from trainforge.serve import registry
from trainforge.serve.batching import Batcher, classify_batch, generate_batch
from trainforge.serve.config import ServeConfig
from trainforge.serve.engine import check_model_dir, load_engine
from trainforge.serve.metrics import ServeMetrics
from trainforge.serve.rollout import Router, ServedModel, gate_failure

log = logging.getLogger("trainforge.serve")
PROFILE_FILE = "drift_profile.json"


@dataclass
class ModelSource:
    kind: str
    """run, dir or registry."""
    path: Path | None = None
    name: str = "model"
    alias: str | None = None
    uri: str | None = None
    cache: Path | None = None

    @classmethod
    def parse(cls, spec: str, tracking_uri: str | None = None, cache: Path | None = None) -> "ModelSource":
        if spec.startswith("models:/"):
            name, alias = registry.parse_models_uri(spec)
            return cls("registry", name=name, alias=alias, uri=tracking_uri or registry.default_uri(),
                       cache=cache or Path.home() / ".cache" / "trainforge" / "models")
        p = Path(spec)
        if (p / "model" / "config.json").is_file():
            return cls("run", path=p, name=p.resolve().name)
        if (p / "config.json").is_file():
            return cls("dir", path=p, name=p.resolve().name)
        raise UserError(f"{spec}: expected a run directory (with model/), a model directory (with config.json) "
                        f"or models:/NAME@ALIAS")


def weights_digest(model_dir: Path) -> str:
    """A short content version for unregistered models: sha256 of the weight files."""
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


class ServerState:
    def __init__(self, cfg: ServeConfig, source: ModelSource, api_key: str | None = None,
                 events_file: Path | None = None, seed: int = 0, device=None):
        """device: the torch.device every version loads onto (None: serve.device resolved here, so a
        missing GPU is a UserError before anything loads); serve.dtype picks their dtype on it."""
        from trainforge.device import resolve_device
        from trainforge.serve.engine import serving_dtype

        self.cfg, self.source, self.api_key, self.seed = cfg, source, api_key, seed
        self.device = device if device is not None else resolve_device(cfg.device or "auto", "serve.device")
        self.dtype = serving_dtype(cfg.dtype, self.device)
        self.metrics = ServeMetrics()
        self.router: Router | None = None
        self.ready = False
        self.events: deque = deque(maxlen=1000)
        self.events_file = events_file
        self.answers: OrderedDict[str, tuple[str, str | None]] = OrderedDict()  # response id → (version, label)
        self._poller: asyncio.Task | None = None

    @property
    def model_name(self) -> str:
        return self.cfg.model_name or self.source.name

    # ----------------------------------------------------------------------------- loading

    def load_version(self, model_dir: Path, version: str, role: str) -> ServedModel:
        import torch

        if self.cfg.batching.torch_threads:
            torch.set_num_threads(self.cfg.batching.torch_threads)
        check_model_dir(model_dir)
        engine = load_engine(model_dir, self.device, self.dtype)
        log.info("loaded %s (version %s, %s) on %s in %s", model_dir, version, role, engine.device,
                 next(engine.model.parameters()).dtype)
        run = classify_batch if engine.kind == "classifier" else generate_batch
        b = self.cfg.batching
        batcher = Batcher(lambda reqs: run(engine, reqs), b.max_batch_size, b.max_wait_ms, f"{self.model_name}-{version}")
        window = None
        if self.cfg.drift.enabled and getattr(engine, "input_kind", "text") == "text":  # drift profiles are of texts
            profile = self.reference_profile(model_dir, engine)
            window = drift_mod.DriftWindow(profile, self.cfg.drift, engine.token_ids) if profile else None
        return ServedModel(self.model_name, version, role, engine, batcher, window)

    def reference_profile(self, model_dir: Path, engine) -> dict | None:
        """register/drift_profile.json of the run, the one shipped with a registered version, or one
        built now from the run's training data; None (drift off) for a bare directory without one."""
        candidates = [model_dir / PROFILE_FILE]
        if self.source.kind == "run":
            candidates.insert(0, self.source.path / "register" / PROFILE_FILE)
        for p in candidates:
            if p.is_file():
                return json.loads(p.read_text())
        train = self.source.path / "data" / "train.jsonl" if self.source.kind == "run" else None
        if train is None or not train.is_file():
            log.warning("no drift reference for %s (no %s, no data/train.jsonl): drift monitoring off", model_dir, PROFILE_FILE)
            return None
        return profile_from_jsonl(train, engine, self.cfg.drift, self.seed)

    def load_initial(self) -> None:
        src = self.source
        if src.kind in ("run", "dir"):
            model_dir = src.path / "model" if src.kind == "run" else src.path
            self.router = Router(self.load_version(model_dir, weights_digest(model_dir), "model"))
        else:
            champion_alias = src.alias or registry.CHAMPION
            champion = self._load_alias(champion_alias)
            if champion is None:
                raise UserError(f"models:/{src.name}@{champion_alias}: no such alias in {src.uri} (see trainforge deploy status {src.name})")
            challenger = self._load_alias(registry.CHALLENGER) if src.alias is None else None
            self.router = Router(champion, challenger, self.cfg.canary.share, self.seed)
        self.ready = True

    def _load_alias(self, alias: str) -> ServedModel | None:
        version = registry.alias_version(registry.client(self.source.uri), self.source.name, alias)
        if version is None:
            return None
        path = registry.download(self.source.uri, self.source.name, version, self.source.cache)
        return self.load_version(path, version, alias if self.source.alias is None else "champion")

    # ----------------------------------------------------------------------------- registry polling

    async def start(self) -> None:
        await asyncio.to_thread(self.load_initial)
        if self.source.kind == "registry":
            self._poller = asyncio.create_task(self._poll_registry())

    async def stop(self) -> None:
        self.ready = False
        if self._poller:
            self._poller.cancel()
        for m in self.router.served() if self.router else []:
            await asyncio.to_thread(m.batcher.close, True, self.cfg.drain_seconds)

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.canary.poll_seconds)
            try:
                await self.sync_with_registry()
            except Exception as e:  # noqa: BLE001 — a flaky store must not stop serving what is loaded
                log.warning("registry poll failed: %s", e)

    async def sync_with_registry(self) -> None:
        """Hot-swap any version whose alias moved since the last look."""
        src, router = self.source, self.router
        c = registry.client(src.uri)
        wanted = {"champion": await asyncio.to_thread(registry.alias_version, c, src.name, src.alias or registry.CHAMPION)}
        if src.alias is None:
            wanted["challenger"] = await asyncio.to_thread(registry.alias_version, c, src.name, registry.CHALLENGER)
        for role, version in wanted.items():
            current = getattr(router, role)
            if version is None or version in router.rejected:
                if role == "challenger" and current is not None:
                    self.swap("challenger", None, "challenger alias removed in the registry")
                continue
            if current is not None and current.version == version:
                continue
            path = await asyncio.to_thread(registry.download, src.uri, src.name, version, src.cache)
            new = await asyncio.to_thread(self.load_version, path, version, role)
            self.swap(role, new, f"registry alias {role} now points at version {version}")

    def swap(self, role: str, new: ServedModel | None, reason: str) -> None:
        old = self.router.swap(role, new)
        self.event("hot_swap", role=role, old=old.version if old else None, new=new.version if new else None, reason=reason)

    # ----------------------------------------------------------------------------- live signals

    def event(self, kind: str, **fields) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": kind, "model": self.model_name, **fields}
        self.events.append(record)
        log.warning("%s", json.dumps(record, ensure_ascii=False))
        if self.events_file:
            self.events_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.events_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def observe_input(self, served: ServedModel, text: str, label: str | None) -> None:
        if served.drift is None:
            return
        before = {f for f, s in served.drift.last.items() if s["drifted"]}
        scores = served.drift.observe(text, label)
        m = self.metrics
        m.drift_window.labels(served.name, served.version).set(len(served.drift))
        if scores is None:
            return
        for feature, s in scores.items():
            m.drift_psi.labels(served.name, served.version, feature).set(s["psi"])
            m.drift_kl.labels(served.name, served.version, feature).set(s["kl"])
            m.drift_detected.labels(served.name, served.version, feature).set(int(s["drifted"]))
            if s["drifted"] and feature not in before:
                self.event("drift_detected", version=served.version, feature=feature, psi=s["psi"], kl=s["kl"],
                           window=len(served.drift))
            elif not s["drifted"] and feature in before:
                self.event("drift_cleared", version=served.version, feature=feature, psi=s["psi"], kl=s["kl"])

    def remember_answer(self, response_id: str, served: ServedModel, label: str | None) -> None:
        self.answers[response_id] = (served.version, label)
        while len(self.answers) > 100_000:
            self.answers.popitem(last=False)

    async def after_request(self, served: ServedModel, seconds: float, ok: bool) -> None:
        served.stats.record(seconds, ok)
        if served.role == "challenger":
            await self.check_gates()

    async def check_gates(self) -> None:
        router = self.router
        challenger = router.challenger
        if challenger is None:
            return
        drifted = bool(challenger.drift and challenger.drift.last.get("label", {}).get("drifted"))
        reason = gate_failure(challenger.stats, router.champion.stats, self.cfg.canary.gates, drifted)
        if reason is None or router.challenger is not challenger:
            return
        router.rejected.add(challenger.version)
        self.swap("challenger", None, f"canary gate failed: {reason}")  # traffic moves first, the registry follows
        self.metrics.transitions.labels("rollback-challenger").inc()
        try:
            await asyncio.to_thread(registry.rollback, self.source.uri, self.source.name, reason, "canary-gate", True)
        except Exception as e:  # noqa: BLE001 — the router already moved; the next poll keeps it away
            self.event("registry_rollback_failed", version=challenger.version, error=str(e))


def profile_from_jsonl(path: Path, engine, cfg, seed: int) -> dict:
    """Reference profile from a training file: a seeded sample of texts and the model's labels on them."""
    import random

    from trainforge.data.io import read_jsonl

    texts = [r["text"] for r in read_jsonl(path) if isinstance(r.get("text"), str)]
    texts = random.Random(seed).sample(texts, min(len(texts), cfg.reference_size))
    predicted = None
    if engine.kind == "classifier":
        predicted = []
        for i in range(0, len(texts), 64):
            predicted += [max(p, key=p.get) for p in engine.classify(texts[i : i + 64])]
    return drift_mod.build_profile(texts, predicted, cfg, seed, engine.token_ids)
