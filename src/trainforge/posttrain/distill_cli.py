"""`trainforge distill-traces PROMPTS.jsonl -o OUT/ [--config CONFIG.yaml] [--base-url URL] [--model NAME] …`.

Flags override the config's distill: section (posttrain/distill_config.py holds the defaults and their docs)."""

from __future__ import annotations

from pathlib import Path


def cmd_distill(args) -> int:
    from trainforge.console import console
    from trainforge.posttrain.distill import CURSOR, REJECTED, TRACES, distill_traces
    from trainforge.posttrain.distill_config import DistillConfig
    from trainforge.posttrain.grpo_config import RewardSpec

    base = {}
    if args.config:
        from trainforge.config import load_config

        section = load_config(args.config).distill
        base = section.model_dump() if section is not None else {}
    flags = {"base_url": args.base_url, "model": args.model, "concurrency": args.concurrency, "retries": args.retries,
             "samples": args.samples, "max_tokens": args.max_tokens, "temperature": args.temperature,
             "prompt_field": args.prompt_field, "min_reward": args.min_reward, "system_prompt": args.system_prompt,
             "seed": args.seed}
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.reward:
        base["rewards"] = [RewardSpec(name=n).model_dump() for n in args.reward]
    cfg = DistillConfig(**base)
    out = Path(args.output)
    counts = distill_traces(Path(args.prompts), out, cfg, limit=args.limit)
    console.print(f"          {counts['processed']}/{counts['prompts']} prompts done: {counts['kept']} verified traces kept, "
                  f"{counts['rejected']} rejected, {counts['failed']} requests failed this run (retried next run)")
    console.print(f"          outputs: {out / TRACES} (SFT records), {out / REJECTED}, {out / CURSOR}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("distill-traces", help="ask a teacher (OpenAI-compatible API) and keep its verified reasoning traces")
    p.add_argument("prompts", help="JSONL with a prompt field (and e.g. `reference` for the exact_answer reward)")
    p.add_argument("-o", "--output", required=True, help="folder for traces.jsonl, rejected.jsonl, cursor.json")
    p.add_argument("--config", default=None, help="YAML whose distill: section gives the defaults")
    p.add_argument("--base-url", default=None, help="the teacher's API, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="model name (default: the first the endpoint lists)")
    p.add_argument("--reward", action="append", default=None,
                   help="reward that verifies a trace (repeatable): a built-in or pkg.module:function")
    p.add_argument("--min-reward", type=float, default=None, help="weighted reward a kept trace reaches (default 1)")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 8)")
    p.add_argument("--retries", type=int, default=None, help="retries per request (default 3)")
    p.add_argument("--samples", type=int, default=None, help="answers per prompt (default 1)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--prompt-field", default=None)
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--limit", type=int, default=None, help="ask about at most this many new prompts in this run")
    p.set_defaults(func=cmd_distill)
