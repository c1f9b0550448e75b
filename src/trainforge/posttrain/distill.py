"""R1-style distillation: a teacher's reasoning traces, verified by the reward functions, as SFT records.

    prompts.jsonl ──▶ N requests in flight (openai client, retries with backoff) ──▶ teacher at any
    OpenAI-compatible endpoint ──▶ reasoning + answer ──▶ rewards (posttrain/rewards.py, as GRPO uses)
        ├─ verified  ──▶ OUT/traces.jsonl    {"id", "prompt", "response": "<think>…</think>answer", the input's fields}
        └─ not       ──▶ OUT/rejected.jsonl  {"id", "prompt", "completion", "reason", "rewards"}
    OUT/cursor.json   what is done (processed / kept / rejected / failed), rewritten atomically

The reasoning is the message's `reasoning_content` (DeepSeek's API, vLLM's reasoning parsers) or, when the
content itself holds <think>…</think>, that span; the response is then "<think>{reasoning}</think>{answer}",
the format SFT trains and the think_format reward checks. A teacher with neither gives no reasoning: its
answer is kept as the response behind an empty <think></think>.

Resumable: every prompt's outcome is one appended, fsync'ed line in traces.jsonl or rejected.jsonl; a rerun
reads both, skips the prompts already there (each prompt's input line number is its key), drops a torn last
line (a kill mid-write) and asks again for that one. A request that still fails after its retries is counted
in cursor.json's `failed` and not marked done, so the next run retries it.

Then SFT the student on traces.jsonl with the existing SFT task (`train.task: sft`; README "Distilling a
teacher's reasoning").
"""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from trainforge.errors import UserError
from trainforge.posttrain.distill_config import DistillConfig
from trainforge.posttrain.rewards import build_rewards, score

TRACES, REJECTED, CURSOR = "traces.jsonl", "rejected.jsonl", "cursor.json"
_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def split_reasoning(content: str, reasoning: str | None) -> tuple[str, str]:
    """(reasoning, answer) of a teacher's message."""
    content = content or ""
    if reasoning:
        return reasoning.strip(), _THINK.sub("", content).strip()
    m = _THINK.search(content)
    if m:
        return m.group(1).strip(), (content[: m.start()] + content[m.end():]).strip()
    return "", content.strip()


def sft_response(reasoning: str, answer: str) -> str:
    return f"<think>{reasoning}</think>{answer}"


@dataclass
class Outcome:
    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    failed: str | None = None


def _read_done(path: Path) -> set[int]:
    """Input line numbers already in `path`; a torn last line (a kill mid-write) is cut off the file."""
    done: set[int] = set()
    if not path.is_file():
        return done
    raw = path.read_bytes()
    good = 0
    for line in raw.splitlines(keepends=True):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        if not line.endswith(b"\n"):
            break
        done.add(int(rec["line"]))
        good += len(line)
    if good != len(raw):
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


class _Writer:
    """Appends outcomes line by line (flush + fsync) and keeps cursor.json current, from any worker thread."""

    def __init__(self, out: Path, counts: dict):
        self.out, self.counts, self.lock = out, counts, threading.Lock()
        self.files = {name: open(out / name, "a", encoding="utf-8") for name in (TRACES, REJECTED)}

    def write(self, line_no: int, outcome: Outcome) -> None:
        with self.lock:
            if outcome.failed is not None:
                self.counts["failed"] += 1
                self.counts["last_error"] = outcome.failed
            else:
                for name, recs in ((TRACES, outcome.kept), (REJECTED, outcome.rejected)):
                    for rec in recs:
                        self.files[name].write(json.dumps(rec, ensure_ascii=False) + "\n")
                for f in self.files.values():
                    f.flush()
                    os.fsync(f.fileno())
                self.counts["processed"] += 1
                self.counts["kept"] += len(outcome.kept)
                self.counts["rejected"] += len(outcome.rejected)
            tmp = self.out / (CURSOR + ".tmp")
            tmp.write_text(json.dumps(self.counts, indent=1, ensure_ascii=False))
            os.replace(tmp, self.out / CURSOR)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def read_prompts(path: Path, prompt_field: str) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(row.get(prompt_field), str) or not row[prompt_field].strip():
                raise UserError(f"{path}:{i}: no '{prompt_field}' text (distill.prompt_field / --prompt-field)")
            rows.append((i, row))
    return rows


def distill_traces(prompts_path: Path, out: Path, cfg: DistillConfig, limit: int | None = None) -> dict:
    """Ask the teacher about every prompt not yet done; returns the cursor's counts. limit: at most this many
    prompts in this call (a budget; the next call carries on)."""
    try:
        from openai import OpenAI
    except ImportError:
        raise UserError("distill-traces needs the openai client: pip install 'trainforge[distill]'") from None

    out.mkdir(parents=True, exist_ok=True)
    rows = read_prompts(prompts_path, cfg.prompt_field)
    done = _read_done(out / TRACES) | _read_done(out / REJECTED)
    todo = [(i, r) for i, r in rows if i not in done][:limit]
    rewards = build_rewards(cfg.rewards)
    client = OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "unused",
                    max_retries=cfg.retries, timeout=cfg.timeout_seconds)
    model = cfg.model or client.models.list().data[0].id
    counts = {"source": str(prompts_path), "teacher": model, "base_url": cfg.base_url, "prompts": len(rows),
              "processed": len(done), "kept": sum(1 for _ in _lines(out / TRACES)),
              "rejected": sum(1 for _ in _lines(out / REJECTED)), "failed": 0}
    writer = _Writer(out, counts)

    def ask(line_no: int, row: dict) -> Outcome:
        from openai import OpenAIError

        messages = ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + \
                   [{"role": "user", "content": row[cfg.prompt_field]}]
        choices = []
        for k in range(cfg.samples):  # one request per sample: `n > 1` is not served everywhere (trainforge serve: n = 1)
            try:
                reply = client.chat.completions.create(
                    model=model, messages=messages, max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                    **({"seed": cfg.seed + 1000 * line_no + k} if cfg.seed is not None else {}))
            except OpenAIError as e:
                return Outcome(failed=f"line {line_no}: {type(e).__name__}: {e}")
            choices += reply.choices
        return verify(line_no, row, choices, model, cfg, rewards)

    try:
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            futures = {pool.submit(ask, i, r): i for i, r in todo}
            for fut in as_completed(futures):
                writer.write(futures[fut], fut.result())
    finally:
        writer.close()
    return counts


def _lines(path: Path):
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            yield from (line for line in f if line.strip())


def verify(line_no: int, row: dict, choices, teacher: str, cfg: DistillConfig, rewards) -> Outcome:
    """Score each of the teacher's answers to one prompt with the rewards; the verified ones become SFT records."""
    prompt = row[cfg.prompt_field]
    columns = {k: v for k, v in row.items() if k != cfg.prompt_field}
    responses = []
    for c in choices:
        extra = getattr(c.message, "model_extra", None) or {}
        reasoning, answer = split_reasoning(c.message.content or "", extra.get("reasoning_content"))
        responses.append(sft_response(reasoning, answer))
    scores = score(rewards, [prompt] * len(responses), responses, {k: [v] * len(responses) for k, v in columns.items()})
    outcome = Outcome()
    base_id = row.get("id", f"{line_no}")
    for k, (resp, total) in enumerate(zip(responses, scores.total)):
        per = {name: values[k] for name, values in scores.per_function.items()}
        rec_id = f"{base_id}" if len(responses) == 1 else f"{base_id}#{k}"
        if total is not None and total >= cfg.min_reward:
            outcome.kept.append({**columns, "id": rec_id, "prompt": prompt, "response": resp, "teacher": teacher,
                                 "rewards": per, "line": line_no})
        else:
            outcome.rejected.append({"id": rec_id, "prompt": prompt, "completion": resp, "line": line_no, "rewards": per,
                                     "reason": "unscored" if total is None else "failed_reward"})
    return outcome
