"""Bridge to EleutherAI's lm-evaluation-harness for causal LMs, on task YAMLs in a local folder.

    trainforge eval runs/my-llm --lm-eval tasks/            # every task the folder's YAMLs define
    trainforge eval runs/my-llm --lm-eval tasks/ --lm-eval-tasks ceval_mini --lm-eval-limit 50

The folder holds ordinary harness task files (`task:`, `dataset_path: json`, `dataset_kwargs:
{data_files: ...}`, `doc_to_text`, ...), so nothing is downloaded: the harness's own datasets
loader reads local JSON. The run's model/ is handed to the harness's Hugging Face backend as a
loaded model (any *ForCausalLM that AutoModelForCausalLM loads). Results go to
eval/lm_eval.json; `pip install lm-eval` (trainforge[lm-eval]) provides the harness.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from trainforge.errors import UserError


def tasks_in(folder: Path) -> list[str]:
    names = []
    for f in sorted(folder.rglob("*.yaml")):
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{f}: not valid YAML ({e})") from None
        if isinstance(doc, dict) and isinstance(doc.get("task"), str):
            names.append(doc["task"])
    return names


def run_harness(model_dir: Path, task_dir: Path, tasks: list[str] | None = None, limit: int | None = None,
                batch_size: int = 8, device: str = "auto") -> dict:
    """{task: {metric: value}} from lm_eval.simple_evaluate, also written to eval/lm_eval.json.
    device: the run's `device:` (auto, cpu, cuda, cuda:N, mps); the model is loaded there in fp32."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("--lm-eval needs lm-evaluation-harness: pip install 'lm-eval>=0.4' (or trainforge[lm-eval])") from None
    from trainforge.device import describe, resolve_device
    from trainforge.models.load import refuse_virtual_tokens
    from trainforge.models.tokenizer import load_tokenizer
    from trainforge.tasks import task_for

    if not task_dir.is_dir():
        raise UserError(f"--lm-eval {task_dir}: no such folder of task YAML files")
    where = resolve_device(device, "device")
    task, info = task_for(model_dir)
    if task.serves_as != "generator":
        raise UserError(f"--lm-eval scores causal LMs; {model_dir} holds a {info.task} model (train.task: {info.task})")
    known = tasks_in(task_dir)
    tasks = tasks or known
    unknown = [t for t in tasks if t not in known]
    if not tasks or unknown:
        raise UserError(f"--lm-eval-tasks: {', '.join(unknown) or '(none)'} not defined in {task_dir} (it defines: {', '.join(known) or 'nothing'})")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    model = task.load_model(model_dir).to(where)
    refuse_virtual_tokens(model, model_dir, "lm-evaluation-harness scores a plain transformers model and would skip the "
                          "learned virtual tokens", "train with method lora or full to score it with --lm-eval")
    tokenizer = load_tokenizer(model_dir)
    # HFLM takes a loaded model's device from the model itself; `device` is passed to match it
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(where))
    out = simple_evaluate(model=lm, tasks=tasks, limit=limit, task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                          log_samples=False, bootstrap_iters=0)
    results = {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "alias"}
               for task, metrics in out["results"].items()}
    (model_dir.parent / "eval").mkdir(exist_ok=True)
    (model_dir.parent / "eval" / "lm_eval.json").write_text(json.dumps(
        {"tasks": results, "limit": limit, "task_dir": str(task_dir), "lm_eval_version": _version(),
         "device": describe(where)}, indent=1))
    return results


def _version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
