"""The report's lineage section: what the run was made from and how to make it again.

    headline hyperparameters   the keys a reader asks for first (model, method, lr, steps, …)
    resolved config            config.resolved.yaml in full, folded (<details>)
    hashes                     the config's sha256 and every data file's, from manifest.json
    reproduce                  the command that re-runs this exact config (the resolved one: every
                               default and override already filled in), at the recorded git commit
"""

from __future__ import annotations

from pathlib import Path

from trainforge.paths import CONFIG_RESOLVED, MANIFEST
from trainforge.report.html import esc, read_json, table

# (dotted key, what a reader calls it): shown when the config has the key
HEADLINE_KEYS = (
    ("seed", "seed"), ("device", "device"),
    ("data.split.val", "val share"), ("data.split.test", "test share"),
    ("pretrain.model", "pretrain model"), ("pretrain.steps", "pretrain steps"),
    ("pretrain.tokenizer.vocab_size", "vocab size"),
    ("train.task", "task"), ("train.model", "model"), ("train.method", "method"), ("train.lr", "learning rate"),
    ("train.batch_size", "batch size"), ("train.epochs", "epochs"), ("train.max_steps", "max steps"),
    ("train.max_length", "max length"), ("train.precision", "precision"), ("train.lm_loss", "LM loss weight"),
    ("train.lora.r", "LoRA r"), ("train.early_stopping", "early stopping"),
    ("eval.split", "eval split"), ("eval.baseline", "baseline"),
    ("compress.int8", "INT8"), ("compress.gates.max_metric_drop", "gate: max metric drop"),
    ("compress.gates.min_speedup_b1", "gate: min speedup b1"), ("compress.gates.min_speedup_b32", "gate: min speedup b32"),
    ("register.name", "registered as"), ("register.alias", "alias"),
)


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def lineage(run_dir: Path) -> str | None:
    import yaml

    path = run_dir / CONFIG_RESOLVED
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    cfg = yaml.safe_load(text) or {}
    manifest = read_json(run_dir / MANIFEST) or {}
    method = _get(cfg, "train.method")
    pairs = [[label, _fmt(v)] for key, label in HEADLINE_KEYS
             if (v := _get(cfg, key)) is not None and not (key.startswith("train.lora.") and method != "lora")]
    sources = [s.get("builtin") or s.get("path") for s in (_get(cfg, "data.sources") or []) if isinstance(s, dict)]
    if sources:
        pairs.insert(0, ["data sources", ", ".join(str(s) for s in sources)])
    per_row = 3  # three setting/value pairs a row: the table fits one screen, and wraps to scroll on a phone
    rows = [sum(pairs[i:i + per_row], []) + ["", ""] * (per_row - len(pairs[i:i + per_row])) for i in range(0, len(pairs), per_row)]

    hashes = [[CONFIG_RESOLVED, f"<code>{esc(manifest.get('config_sha256', '—'))}</code>"]]
    for stage, rec in manifest.get("stages", {}).items():
        for rel, digest in (rec.get("outputs") or {}).items():
            if rel.startswith("data/") and rel.endswith(".jsonl") and "/rejected/" not in rel and "/quarantine/" not in rel:
                hashes.append([rel, f"<code>{esc(digest)}</code>"])
    keys = [[name, f"<code>{esc(rec.get('key', '—')[:16])}…</code>"] for name, rec in manifest.get("stages", {}).items()]

    resolved = path.resolve()
    commit = manifest.get("git_commit")
    version = (manifest.get("versions") or {}).get("trainforge")
    steps = []
    if commit:
        steps.append(f"git checkout {commit}")
    steps.append(f"trainforge run {resolved} name={cfg.get('name', run_dir.name)}-again")
    return (
        "<h2>Lineage and reproduction</h2>"
        "<h3>Hyperparameters</h3>" + table(["setting", "value"] * per_row, rows)
        + f"<details><summary>Full resolved config ({esc(CONFIG_RESOLVED)}, every default filled in)</summary>"
        f"<pre>{esc(text)}</pre></details>"
        + "<h3>Hashes</h3><p class='muted'>sha256 from manifest.json: the config and the data splits every later stage read.</p>"
        + table(["file", "sha256"], hashes)
        + (f"<details><summary>Cache key of each stage</summary>{table(['stage', 'key'], keys)}</details>" if keys else "")
        + "<h3>Reproduce</h3><p>The resolved config holds every default and override of this run, so re-running it "
        f"reproduces it (into a new run directory here; drop <code>name=…</code> to re-use this one and its cache)"
        f"{', with trainforge ' + esc(version) if version else ''}:</p>"
        f"<pre>{esc(chr(10).join(steps))}</pre>"
    )
