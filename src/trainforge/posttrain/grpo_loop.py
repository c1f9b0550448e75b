"""The GRPO recipe's loop, in one file that reads top to bottom (the supervised loop is train/loop.py).

    setup: device and precision, optimizer groups (train/loop.py param_groups), reference (β > 0 only), resume
    for each step (one generation round):
        prompts_per_step prompts from the epoch's shuffled order × G
        → rollouts: serve's batched KV-cache decoder (posttrain/rollouts.py), seeds drawn from the recipe's RNG
        → rewards (posttrain/rewards.py) → group advantages (posttrain/grpo.py)
        → old log-probs (μ > 1) and reference log-probs (β > 0), once per round, stored with the rollouts
        → μ optimizer updates over the stored rollouts: micro-batches (train.grad_accum), clip, step
        → log (TRL's metric names) → checkpoint
    end: the policy as it is after the last update (RL has no validation loss to pick a best step by)

Resume: a checkpoint is written after an optimizer update (every train.checkpoint_every updates, and at the
end of each epoch of prompts and of the run). When it falls between two of a round's μ updates it holds that
round's rollouts (ids, masks, advantages, old and reference log-probs), so `--resume` carries on with the
same rollouts instead of sampling new ones; with the optimizer, the schedule position, the epoch order and
every RNG state, a resumed CPU run ends on exactly the weights of an uninterrupted one.

Memory: β = 0 (the default) keeps no reference model at all. With β > 0 a LoRA policy's reference is the
same model with its adapter switched off (no copy); a fully trained policy keeps one frozen copy.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainforge import device as devices
from trainforge.console import console, progress_bar
from trainforge.posttrain import rollouts as rollout_lib
from trainforge.posttrain.grpo import group_advantages, policy_loss, token_logprobs
from trainforge.posttrain.grpo_config import GrpoConfig
from trainforge.posttrain.rewards import Reward, build_rewards, score
from trainforge.train import checkpoint, memory
from trainforge.train.config import LoopConfig
from trainforge.train.loop import lr_at, optimizer_step, param_groups


@dataclass
class GrpoResult:
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    updates: int = 0
    seconds: float = 0.0
    generation_seconds: float = 0.0
    completions: int = 0
    completion_tokens: int = 0

    @property
    def generation_share(self) -> float:
        return self.generation_seconds / self.seconds if self.seconds else 0.0


@dataclass
class Prompts:
    """The training prompts, tokenized once: ids (chat-framed) and every other field as reward columns."""

    texts: list[str]
    ids: list[list[int]]
    columns: list[dict]


def frame_labelled(rows: list[dict], prompt_field: str, template: str, label_names: dict[str, str]) -> list[dict]:
    """A labelled text record without a prompt (the reviews) gets one from `template` (train.sft.template) and its
    label's answer (train.sft.label_names) as `reference`: "answer 正面 or 负面", scored by label_match."""
    out = []
    for r in rows:
        if not isinstance(r.get(prompt_field), str) and isinstance(r.get("text"), str) and r.get("label") is not None:
            r = {**r, prompt_field: template.format(text=r["text"]),
                 "reference": label_names.get(str(r["label"]), str(r["label"]))}
        out.append(r)
    return out


def encode_prompts(rows: list[dict], tokenizer, prompt_field: str, max_prompt_tokens: int) -> Prompts:
    from trainforge.chat import prompt_ids
    from trainforge.errors import UserError

    texts, ids, cols = [], [], []
    for row in rows:
        prompt = row.get(prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"train.task=grpo: record {row.get('id')} has no '{prompt_field}' text (grpo.prompt_field)")
        texts.append(prompt)
        ids.append(prompt_ids(tokenizer, prompt)[-max_prompt_tokens:])  # keep the prompt's end: the question
        cols.append({k: v for k, v in row.items() if k != prompt_field})
    return Prompts(texts, ids, cols)


def _columns(rows: list[dict]) -> dict[str, list]:
    keys = sorted({k for r in rows for k in r})
    return {k: [r.get(k) for r in rows] for k in keys}


@dataclass
class RoundBuffer:
    """One generation round's rollouts and everything the μ updates reuse (saved in a mid-round checkpoint)."""

    batch: rollout_lib.LossBatch
    advantages: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    metrics: dict
    done_iterations: int = 0

    def state(self) -> dict:
        b = self.batch
        return {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "position_ids": b.position_ids,
                "completion_mask": b.completion_mask, "prompt_width": b.prompt_width, "advantages": self.advantages,
                "old_logp": self.old_logp, "ref_logp": self.ref_logp, "metrics": self.metrics,
                "done_iterations": self.done_iterations}

    @classmethod
    def from_state(cls, s: dict) -> "RoundBuffer":
        batch = rollout_lib.LossBatch(s["input_ids"], s["attention_mask"], s["position_ids"], s["completion_mask"],
                                      s["prompt_width"])
        return cls(batch, s["advantages"], s["old_logp"], s["ref_logp"], s["metrics"], s["done_iterations"])


def _all_logprobs(model, batch: rollout_lib.LossBatch, micro: int, device, autocast) -> torch.Tensor:
    out = []
    with torch.no_grad(), autocast:
        for i in range(0, batch.input_ids.shape[0], micro):
            b = batch.rows(slice(i, i + micro)).to(device)
            out.append(token_logprobs(model, b.input_ids, b.attention_mask, b.position_ids, b.prompt_width).float().cpu())
    return torch.cat(out)


def reference_for(model, beta: float):
    """What scores the reference log-probs: nothing (β = 0), the policy with its adapter off (peft), or a frozen copy."""
    if beta == 0:
        return None
    if hasattr(model, "disable_adapter"):
        return model
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def grpo_fit(model, tokenizer, prompts: Prompts, loop: LoopConfig, grpo: GrpoConfig, seed: int, *,
             rewards: list[Reward] | None = None, groups=None, checkpoint_dir: Path | None = None, device=None,
             stage: str = "grpo") -> GrpoResult:
    """Train `model` (a causal LM, or a peft-wrapped one) in place with GRPO on `prompts`."""
    # ---- setup
    device = device or next(model.parameters()).device
    precision = devices.resolve_precision(loop.precision, device, "train.precision")
    autocast = devices.autocast(device, precision)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    rewards = rewards if rewards is not None else build_rewards(grpo.rewards)
    G, P, mu = grpo.group_size, grpo.prompts_per_step, grpo.iterations
    steps_per_epoch = math.ceil(len(prompts.ids) / P)
    total = loop.max_steps or max(1, int(round(loop.epochs * steps_per_epoch)))
    total_updates = total * mu
    if any(p.device != device for p in model.parameters()):
        model.to(device)
    if groups is None:
        groups = [([(n, p) for n, p in model.named_parameters() if p.requires_grad], 1.0)]
    tracked = {n: p for named, _ in groups for n, p in named}
    optimizer = torch.optim.AdamW(param_groups(groups, loop.weight_decay), lr=loop.lr, betas=loop.betas, eps=1e-8)
    reference = reference_for(model, grpo.beta)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n_rows = P * G
    micro = max(1, math.ceil(n_rows / loop.grad_accum))
    # the supervised loop's memory estimate, on the longest [prompt | completion] row: the micro-batch halves to fit
    seq_len = max(map(len, prompts.ids)) + grpo.max_new_tokens
    limit = int(loop.memory_limit_gb * (1 << 30)) if loop.memory_limit_gb else int(0.8 * devices.available_memory(device))
    fitted, est = memory.fit_micro_batch(model, micro, seq_len, precision, True, limit,
                                         checkpointing=loop.gradient_checkpointing, on_cpu=device.type == "cpu")
    ref_bytes = sum(p.numel() * p.element_size() for p in reference.parameters()) if reference not in (None, model) else 0
    console.print(f"          memory estimate at micro-batch {micro}×{seq_len} tokens: {est.describe()}"
                  f"{f' + reference copy {ref_bytes / (1 << 30):.2f} GiB' if ref_bytes else ''} (limit {limit / (1 << 30):.1f} GiB)"
                  f"{f'; micro-batch {micro} → {fitted}' if fitted != micro else ''}")
    micro = fitted

    # ---- resume: weights, optimizer, RNGs, epoch order, the round in progress
    result, queue, buffer, start = GrpoResult(), [], None, 0
    saved = checkpoint.load_latest(checkpoint_dir) if (loop.resume and checkpoint_dir) else None
    if saved is not None:
        checkpoint.load_weights(model, optimizer, saved, False, checkpoint_dir, tracked)
        rng.setstate(saved["rng_python"])
        checkpoint.restore_rng(saved, device, 0, 1)
        queue, start = saved["queue"], saved["step"]
        result = GrpoResult(**saved["result"])
        buffer = RoundBuffer.from_state(saved["buffer"]) if saved.get("buffer") else None
        console.print(f"          resumed from step {start}{' (mid-round: the same rollouts)' if buffer else ''} ({checkpoint_dir})")

    def save(step: int, updates: int) -> None:
        if checkpoint_dir is None:
            return
        weights, optim = checkpoint.full_state(tracked, optimizer)
        checkpoint.save_checkpoint(checkpoint_dir, updates, {
            "step": step, "weights": weights, "optimizer": optim, "fsdp_optimizer": False,
            "rng_python": rng.getstate(), "rng_torch": torch.get_rng_state(), "rng_ranks": [devices.rng_state(device)],
            "queue": queue, "buffer": buffer.state() if buffer is not None else None, "result": asdict(result),
            "config": {"loop": loop.model_dump(mode="json"), "grpo": grpo.model_dump(mode="json")},
        }, loop.keep_checkpoints, None)

    mlflow = sys.modules.get("mlflow")
    log_curves = mlflow is not None and mlflow.active_run() is not None
    t_start = time.perf_counter() - result.seconds
    log_line_every = max(1, total // 10) if not console.is_terminal else total + 1

    # ---- the loop
    with progress_bar(stage, total=total, unit="steps") as bar:
        bar.advance(start)
        for step in range(start, total):
            t_step = t_round = time.perf_counter()
            gen_seconds = round_gen = 0.0
            if buffer is None:
                # ---- generate: P prompts × G samples, in the epoch's shuffled order
                if not queue:
                    order = list(range(len(prompts.ids)))
                    rng.shuffle(order)
                    queue = [order[i : i + P] for i in range(0, len(order), P)][::-1]
                chosen = [i for i in queue.pop() for _ in range(G)]
                seeds = [rng.getrandbits(63) for _ in chosen]
                t_gen = time.perf_counter()
                rolled = rollout_lib.generate(model, tokenizer, [prompts.ids[i] for i in chosen], grpo.max_new_tokens,
                                              grpo.temperature, grpo.top_p, seeds, grpo.generation_batch)
                gen_seconds = round_gen = time.perf_counter() - t_gen
                # ---- score: every reward function once on the batch; group advantages
                scores = score(rewards, [prompts.texts[i] for i in chosen], rolled.texts,
                               _columns([prompts.columns[i] for i in chosen]))
                adv = group_advantages(scores.total, G, grpo.scale_rewards)
                batch = rollout_lib.loss_batch(rolled.prompt_ids, rolled.completion_ids, pad)
                batch.completion_mask *= adv.valid[:, None].long()  # a sample no reward scored: no loss
                model.eval()  # no dropout in RL: the first iteration's ratio is exactly 1
                old = _all_logprobs(model, batch, micro, device, autocast) if mu > 1 else None
                ref = None
                if reference is not None:
                    with reference.disable_adapter() if reference is model else nullcontext():
                        ref = _all_logprobs(reference, batch, micro, device, autocast)
                buffer = RoundBuffer(batch, adv.advantages, old, ref, _round_metrics(scores, adv, rolled, grpo, G))
                result.completions += len(chosen)
                result.completion_tokens += sum(map(len, rolled.completion_ids))

            # ---- μ updates over the stored rollouts
            tokens = int(buffer.batch.completion_mask.sum())
            while buffer.done_iterations < mu:
                update = step * mu + buffer.done_iterations
                lr = lr_at(update, total_updates, loop.lr, loop.schedule)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                model.eval()
                sums = {"loss": 0.0, "kl": 0.0, "clip_low": 0.0, "clip_high": 0.0, "clip_region": 0.0}
                low_seq, high_seq = [], []
                for i in range(0, n_rows, micro):
                    rows = slice(i, i + micro)
                    b = buffer.batch.rows(rows).to(device)
                    with autocast:
                        logp = token_logprobs(model, b.input_ids, b.attention_mask, b.position_ids, b.prompt_width).float()
                    parts = policy_loss(
                        logp, None if buffer.old_logp is None else buffer.old_logp[rows].to(device),
                        buffer.advantages[rows].to(device), b.completion_mask, epsilon=grpo.epsilon,
                        epsilon_high=grpo.eps_high, loss_type=grpo.loss_type, step_sequences=n_rows, step_tokens=tokens,
                        max_completion_length=grpo.max_new_tokens, beta=grpo.beta,
                        ref_logp=None if buffer.ref_logp is None else buffer.ref_logp[rows].to(device))
                    parts.loss.backward()
                    sums["loss"] += float(parts.loss.detach())
                    for k in ("kl", "clip_low", "clip_high", "clip_region"):
                        sums[k] += float(parts.stats[k])
                    low_seq += parts.stats["clip_low_seq"].tolist()
                    high_seq += parts.stats["clip_high_seq"].tolist()
                optimizer_step(optimizer, None, tracked.values(), loop.grad_clip)
                buffer.done_iterations += 1
                result.updates = update + 1
                denom = max(1, tokens)
                step_seconds = time.perf_counter() - t_step
                entry = {"step": step + 1, "update": update + 1, "loss": round(sums["loss"], 6), "lr": lr,
                         **buffer.metrics, "kl": sums["kl"] / denom,
                         "clip_ratio/low_mean": sums["clip_low"] / denom, "clip_ratio/high_mean": sums["clip_high"] / denom,
                         "clip_ratio/region_mean": sums["clip_region"] / denom,
                         "clip_ratio/low_min": min(low_seq) if low_seq else 0.0,
                         "clip_ratio/high_max": max(high_seq) if high_seq else 0.0,
                         "generation_seconds": round(gen_seconds, 4), "step_seconds": round(step_seconds, 4),
                         "generation_share": round(gen_seconds / step_seconds, 4) if step_seconds else 0.0}
                gen_seconds = 0.0  # a round's generation is counted once, in its first update
                t_step = time.perf_counter()
                result.generation_seconds += entry["generation_seconds"]
                result.history.append(entry)
                result.seconds = time.perf_counter() - t_start
                if log_curves:
                    mlflow.log_metrics({f"{stage}.{k.replace('/', '.')}": v for k, v in entry.items()
                                        if isinstance(v, (int, float))}, step=update + 1)
                end_of_round = buffer.done_iterations == mu
                if end_of_round:
                    buffer = None
                    round_seconds = time.perf_counter() - t_round
                    entry["round_generation_share"] = round(round_gen / round_seconds, 4) if round_seconds else 0.0
                if (loop.checkpoint_every and (update + 1) % loop.checkpoint_every == 0) or \
                        (end_of_round and (not queue or step + 1 == total)):
                    save(step + 1 if end_of_round else step, update + 1)
                if end_of_round:
                    break
            bar.advance()
            last = result.history[-1]
            share = last.get("round_generation_share", last["generation_share"])
            bar.note(f"reward {last['reward']:.3f}  len {last['completions/mean_length']:.1f}  gen {share:.0%}")
            if (step + 1) % log_line_every == 0:
                console.print(f"          {stage} step {step + 1}/{total}  reward {last['reward']:.3f} ± {last['reward_std']:.3f}  "
                              f"zero-std groups {last['frac_reward_zero_std']:.0%}  length {last['completions/mean_length']:.1f}  "
                              f"generation {share:.0%} of the round")
    result.steps = total
    result.seconds = time.perf_counter() - t_start
    return result


def _round_metrics(scores, adv, rolled, grpo: GrpoConfig, G: int) -> dict:
    """The round's reward and completion statistics, under TRL's names."""
    def mean_std(values):
        vals = [v for v in values if v is not None]
        if not vals:
            return float("nan"), float("nan")
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        return m, sd

    reward, reward_std = mean_std(scores.total)
    lengths = [len(c) for c in rolled.completion_ids]
    out = {"reward": reward, "reward_std": reward_std,
           "frac_reward_zero_std": float(adv.zero_std.float().mean()),
           "skipped": int((~adv.valid).sum()),
           "completions/mean_length": sum(lengths) / len(lengths), "completions/min_length": min(lengths),
           "completions/max_length": max(lengths),
           "completions/clipped_ratio": sum(not f for f in rolled.finished) / len(rolled.finished)}
    for name, values in scores.per_function.items():
        m, sd = mean_std(values)
        out[f"rewards/{name}/mean"], out[f"rewards/{name}/std"] = m, sd
    return out
