"""Names inside a run directory, declared once: stages, the runner, the report and the CLI use these.

    runs/<name>/
      config.resolved.yaml  manifest.json  report.html
      collect/     records.jsonl stats.json failed.jsonl sources/<name>/ (cursors, crawl JOBDIR)
      data/        train.jsonl val.jsonl test.jsonl stats.json rejected/ quarantine/
      pretrain/    the pretrained causal LM and its tokenizer
      tokenizer/  model/  adapter/  checkpoints/
      model/trainforge.json   what a later stage needs to load the model (tasks/info.py)
      eval/  compress/  register/
"""

from __future__ import annotations

CONFIG_RESOLVED = "config.resolved.yaml"
MANIFEST = "manifest.json"
REPORT = "report.html"

COLLECT = "collect"
COLLECTED = "collect/records.jsonl"
COLLECT_STATS = "collect/stats.json"

DATA = "data"
TRAIN_SPLIT = "data/train.jsonl"
VAL_SPLIT = "data/val.jsonl"
TEST_SPLIT = "data/test.jsonl"
DATA_STATS = "data/stats.json"
LABEL_ISSUES = "data/label_issues.jsonl"

PRETRAIN = "pretrain"
TOKENIZER = "tokenizer"
MODEL = "model"
ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"
MODEL_INFO_FILE = "trainforge.json"
"""model/trainforge.json: task, family, processor, labels, prompt format (tasks/info.py)."""
TRAINER_STATE_FILE = "trainer_state.json"

EVAL = "eval"
EVAL_METRICS = "eval/metrics.json"
COMPRESS = "compress"
COMPRESS_CANDIDATE = "compress/candidate.json"
REGISTER = "register"
REGISTERED = "register/registered.json"


def split_file(split: str) -> str:
    """data/<split>.jsonl for split train | val | test."""
    return f"{DATA}/{split}.jsonl"
