"""The pretrain and train stages end to end on a tiny run directory: the files they write and that they load back."""

from __future__ import annotations

import json

import pytest
import torch

from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.run import run_pipeline

POS = ["房间很干净，服务很好", "质量不错，很满意", "快递很快，好评", "这本书写得很好", "性价比高，推荐"]
NEG = ["质量太差了，不推荐", "服务态度很差", "房间又脏又旧", "等了很久才到，失望", "书的印刷很差"]
NEWS = ["人民日报发表社论，迎接新的一年。", "国务院召开会议，部署经济工作。", "我国农业生产取得新的成绩。"] * 30


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = root / "tiny" / "data"
    data.mkdir(parents=True)
    for split, n in (("train", 40), ("val", 10)):
        rows = [{"id": f"{split}{i}", "text": (POS if i % 2 else NEG)[i % 5] + "。" * (i % 3),
                 "label": "positive" if i % 2 else "negative"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (root / "news.txt").write_text("\n".join(NEWS), encoding="utf-8")
    return root


def _config(root, **train):
    return validate_config({
        "name": "tiny", "runs_dir": str(root), "tracking": {"enabled": False},
        "pretrain": {"corpus": [{"path": str(root / "news.txt"), "label_field": None}], "model": "llama-tiny",
                     "tokenizer": {"vocab_size": 300, "min_frequency": 1}, "seq_len": 32, "max_steps": 3, "batch_size": 8,
                     "in_domain_epochs": 1, "eval_every": 3, "log_every": 1000},
        "train": {"model": "pretrain", "max_length": 32, "max_steps": 4, "batch_size": 8, "eval_every": 2, "log_every": 1000,
                  **train},
    })


def test_pretrain_then_lora_classifier_writes_loadable_hf_model_and_adapter(run_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    result = run_pipeline(_config(run_dir, method="lora", lora={"r": 4}))
    rd = run_dir / "tiny"
    assert result.ran == ["pretrain", "train"]
    m = result.metrics["pretrain"]
    assert m["in_domain_val_loss_after"] < m["in_domain_val_loss_before"]  # the in-domain phase taught the LM the reviews
    assert {"config.json", "model.safetensors", "tokenizer.json", "pretrain_state.json"} <= {p.name for p in (rd / "pretrain").iterdir()}
    AutoModelForCausalLM.from_pretrained(rd / "pretrain")

    assert 0 < result.metrics["train"]["trainable_share"] < 0.2
    tok = AutoTokenizer.from_pretrained(rd / "model")
    merged = AutoModelForSequenceClassification.from_pretrained(rd / "model").eval()
    assert merged.config.id2label == {0: "negative", 1: "positive"}
    base = AutoModelForSequenceClassification.from_pretrained(rd / "pretrain", num_labels=2)
    adapted = PeftModel.from_pretrained(base, rd / "adapter").eval()
    batch = tok(["服务很好", "质量太差了"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted(**batch).logits, merged(**batch).logits, atol=1e-5)  # merge-and-export = the adapter
    state = json.loads((rd / "model" / "trainer_state.json").read_text())
    assert state["method"] == "lora" and state["trainable_parameters"] < state["parameters"]

    from trainforge.train.report import training

    html = training(rd)
    assert "Pretraining" in html and "method lora" in html


def test_sft_from_the_pretrained_lm_saves_chat_template_and_generations(run_dir):
    result = run_pipeline(_config(run_dir, task="sft", method="full", max_length=48,
                                  sft={"template": "这条评论是正面还是负面？{text}", "label_names": {"positive": "正面", "negative": "负面"},
                                       "generate_examples": 3, "max_new_tokens": 4}))
    rd = run_dir / "tiny"
    assert result.cached == ["pretrain"] and result.ran == ["train"]
    cfg = json.loads((rd / "model" / "tokenizer_config.json").read_text())
    assert "<|assistant|>" in (cfg.get("chat_template") or (rd / "model" / "chat_template.jinja").read_text())
    rows = [json.loads(line) for line in (rd / "model" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["expected"] in ("正面", "负面")
    assert "generate_exact_match" in result.metrics["train"]


def test_sft_masks_the_prompt_out_of_the_loss():
    from trainforge.models.tokenizer import CHAT_TEMPLATE, train_bpe
    from trainforge.tasks import SFTTask
    from trainforge.tasks.sft import prompt_ids
    from trainforge.train.config import TrainConfig

    tok = train_bpe(POS + NEG, 300, 1, 64, family="llama")
    tok.chat_template = CHAT_TEMPLATE
    enc = SFTTask.from_config(TrainConfig(task="sft")).encode([{"id": "a", "prompt": "好吗", "response": "很好"}], tok)
    ids, targets = enc.input_ids[0], enc.token_labels[0]
    n_prompt = len(prompt_ids(tok, "好吗"))
    assert targets[:n_prompt] == [-100] * n_prompt
    assert targets[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:], skip_special_tokens=True) == "很好"


def test_unknown_train_model_is_a_user_error(run_dir):
    cfg = _config(run_dir, model="no-such-model")
    with pytest.raises(UserError, match="train.model: 'no-such-model'"):
        run_pipeline(cfg, only=("train",))


def test_in_domain_only_pretraining_then_concat_pooled_classifier(tmp_path, run_dir):
    """pretrain.epochs=0 skips the general corpus (ULMFiT step 2 alone); the concat head loads back for eval."""
    import shutil

    from trainforge.models.load import load_classifier
    from trainforge.models.pooling import ARCHITECTURE

    shutil.copytree(run_dir / "tiny" / "data", tmp_path / "tiny" / "data")
    cfg = _config(tmp_path, pooling="concat").model_copy(deep=True)
    cfg.pretrain.epochs = 0
    cfg.pretrain.corpus[0].path = str(tmp_path / "missing-news.txt")  # never read when epochs is 0
    result = run_pipeline(cfg)
    assert result.ran == ["pretrain", "train"]
    state = json.loads((tmp_path / "tiny" / "pretrain" / "pretrain_state.json").read_text())
    assert list(state["phases"]) == ["in_domain"]
    model = load_classifier(tmp_path / "tiny" / "model")
    assert type(model).__name__ == ARCHITECTURE and model.score.in_features == 3 * model.config.hidden_size
    cfg.pretrain.in_domain_epochs = 0
    with pytest.raises(UserError, match="both 0"):
        run_pipeline(cfg, only=("pretrain",))


def test_pretrain_config_overrides_shape_the_model_and_typos_are_refused(tmp_path, run_dir):
    import shutil

    from trainforge.models.load import load_classifier

    shutil.copytree(run_dir / "tiny" / "data", tmp_path / "tiny" / "data")
    shutil.copy(run_dir / "news.txt", tmp_path / "news.txt")
    cfg = _config(tmp_path).model_copy(deep=True)
    cfg.pretrain.config_overrides = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                                     "num_key_value_heads": 4, "intermediate_size": 96}
    run_pipeline(cfg)
    body = json.loads((tmp_path / "tiny" / "pretrain" / "config.json").read_text())
    assert (body["hidden_size"], body["num_hidden_layers"], body["intermediate_size"]) == (48, 2, 96)
    assert load_classifier(tmp_path / "tiny" / "model").config.hidden_size == 48  # the classifier is that body
    cfg.pretrain.config_overrides = {"hiden_size": 48}
    with pytest.raises(UserError, match=r"pretrain.config_overrides: LlamaConfig has no field 'hiden_size'"):
        run_pipeline(cfg, only=("pretrain",))


def test_ensemble_trains_members_by_seed_saves_one_model_and_resumes(tmp_path, run_dir, capsys):
    """train.ensemble=2: member 0 is the single-model run exactly, member 1 its seed+1 twin; one model/ to load."""
    import shutil

    from safetensors.torch import load_file

    from trainforge.models.ensemble import EnsembleForSequenceClassification
    from trainforge.models.load import load_classifier
    from trainforge.train.loop import Encoded, evaluate

    for name in ("single", "ensemble"):
        shutil.copytree(run_dir / "tiny" / "data", tmp_path / name / "tiny" / "data")
        shutil.copy(run_dir / "news.txt", tmp_path / name / "news.txt")
    run_pipeline(_config(tmp_path / "single"))
    result = run_pipeline(_config(tmp_path / "ensemble", ensemble=2))
    rd = tmp_path / "ensemble" / "tiny"
    model = load_classifier(rd / "model")
    assert type(model) is EnsembleForSequenceClassification and len(model.members) == 2
    single = load_file(tmp_path / "single" / "tiny" / "model" / "model.safetensors")
    first, second = model.members[0].state_dict(), model.members[1].state_dict()
    assert all(torch.equal(first[k], v) for k, v in single.items())
    assert not torch.equal(first["score.weight"], second["score.weight"])

    state = json.loads((rd / "model" / "trainer_state.json").read_text())
    assert [m["seed"] for m in state["ensemble"]["members"]] == [42, 43]
    assert result.metrics["train"]["steps"] == 8 and result.metrics["train"]["best_val_accuracy"] == state["ensemble"]["val_accuracy"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rd / "model")
    rows = [json.loads(line) for line in (rd / "data" / "val.jsonl").read_text().splitlines()]
    val = Encoded(tok([r["text"] for r in rows], truncation=True, max_length=32)["input_ids"],
                  [model.config.label2id[r["label"]] for r in rows])
    assert evaluate(model, val, tok.pad_token_id)["val_accuracy"] == pytest.approx(state["ensemble"]["val_accuracy"], abs=1e-5)

    assert {p.name for p in (rd / "checkpoints" / "train").iterdir()} == {"member-0", "member-1"}
    cfg = _config(tmp_path / "ensemble", ensemble=2).model_copy(deep=True)
    cfg.train.resume = True  # both members are finished: they load from their checkpoints instead of training again
    capsys.readouterr()
    run_pipeline(cfg, force=("train",), only=("train",))
    assert capsys.readouterr().err.count("resumed from step 4") == 2
    again = load_classifier(rd / "model")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_ensemble_is_for_plain_classifiers():
    with pytest.raises(UserError, match="ensemble=2 is for task classification with method full, freeze or unfreeze"):
        validate_config({"name": "x", "train": {"method": "lora", "ensemble": 2}})


def test_lm_loss_trains_through_the_stage_and_saves_a_plain_classifier(tmp_path, run_dir, capsys):
    """train.lm_loss: the loss adds the next-token term on the reviews' text; model/ is an ordinary classifier."""
    import shutil

    from transformers import AutoModelForSequenceClassification

    from trainforge.train.report import training

    shutil.copytree(run_dir / "tiny" / "data", tmp_path / "tiny" / "data")
    shutil.copy(run_dir / "news.txt", tmp_path / "news.txt")
    plain = run_pipeline(_config(tmp_path))
    capsys.readouterr()
    aux = run_pipeline(_config(tmp_path, lm_loss=1.0), only=("train",))
    assert "loss = cross-entropy + 1 × next-token loss" in capsys.readouterr().err
    assert aux.metrics["train"]["final_loss"] > plain.metrics["train"]["final_loss"] + 1.0  # the LM term is in the loss
    rd = tmp_path / "tiny"
    assert json.loads((rd / "model" / "trainer_state.json").read_text())["lm_loss"] == 1.0
    model = AutoModelForSequenceClassification.from_pretrained(rd / "model")
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert "next-token loss on the text (train.lm_loss)" in training(rd)
