"""Prompt-, prefix- and unmerged-LoRA runs are usable downstream: model/ holds the peft adapter beside
model/base/, and eval, attention maps, serve and compress load it through trainforge.models.load.

The reference every test compares against is built without our loader: the fixture's base model
directory + the run's adapter/ through `peft.PeftModel.from_pretrained`.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from trainforge.config import validate_config
from trainforge.errors import UserError
from trainforge.run import run_pipeline

POS = ["房间很干净，服务很好", "质量不错，很满意", "快递很快，好评", "这本书写得很好", "性价比高，推荐"]
NEG = ["质量太差了，不推荐", "服务态度很差", "房间又脏又旧", "等了很久才到，失望", "书的印刷很差"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny pretrained Llama LM (2 layers, 16 wide, BPE tokenizer) and a labelled split."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainforge.models.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("peft-runs")
    tok = train_bpe(POS + NEG, 200, 1, 32, family="llama")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id))
    lm.save_pretrained(root / "base-lm")
    tok.save_pretrained(root / "base-lm")
    return root


def _write_data(run_dir):
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("val", 10), ("test", 12)):
        rows = [{"id": f"{split}{i}", "text": (POS if i % 2 else NEG)[i % 5] + "。" * (i % 3),
                 "label": "positive" if i % 2 else "negative", "prompt": (POS + NEG)[i % 10], "response": "好" * (1 + i % 2)}
                for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _config(root, name, train: dict, **sections):
    _write_data(root / name)
    return validate_config({
        "name": name, "runs_dir": str(root), "tracking": {"enabled": False},
        "train": {"model": str(root / "base-lm"), "max_length": 32, "max_steps": 6, "batch_size": 8, "eval_every": 3,
                  "log_every": 1000, "lr": 0.05, "prompt": {"virtual_tokens": 3}, **train},
        **sections,
    })


def _reference_classifier(root, run_dir):
    """base-lm with a fresh head + the run's adapter/, through peft alone (not models/load.py)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(root / "base-lm", num_labels=2)
    return PeftModel.from_pretrained(base, run_dir / "adapter").eval()


def test_prompt_tuned_classifier_is_evaluated_served_and_refused_by_compress(root):
    from transformers import AutoTokenizer

    from trainforge.serve.engine import load_engine
    from tests.serve.servers import start_server

    eval_section = {"split": "test", "attention_examples": 1, "batch_size": 4,
                    "adversarial": {"samples": 0, "perturbation_samples": 0}}
    result = run_pipeline(_config(root, "prompt", {"method": "prompt"}, eval=eval_section))
    assert result.ran == ["train", "eval"]
    rd = root / "prompt"
    files = {p.relative_to(rd / "model").as_posix() for p in (rd / "model").rglob("*")}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json", "trainer_state.json",
            "base/config.json", "base/model.safetensors"} <= files
    assert "model.safetensors" not in files  # nothing a plain from_pretrained could mistake for the trained model
    assert (rd / "adapter" / "adapter_model.safetensors").is_file()

    # eval's probabilities (batches of 4, padded) = peft's own model, one unpadded text at a time
    tokenizer = AutoTokenizer.from_pretrained(rd / "model")
    rows = [json.loads(line) for line in (rd / "data" / "test.jsonl").read_text().splitlines()]
    peft_model = _reference_classifier(root, rd)
    with torch.no_grad():
        reference = torch.cat([peft_model(**tokenizer([r["text"]], truncation=True, return_tensors="pt")).logits.softmax(-1) for r in rows])
    predicted = [json.loads(line) for line in (rd / "eval" / "predictions.jsonl").read_text().splitlines()]
    labels = json.loads((rd / "eval" / "metrics.json").read_text())["labels"]
    got = torch.tensor([[p["probabilities"][lab] for lab in labels] for p in predicted])
    assert torch.allclose(got, reference, atol=2e-5)  # predictions.jsonl rounds to 5 places
    drawn = json.loads((rd / "eval" / "analysis.json").read_text())["attention"]
    assert drawn[0]["tokens"][:3] == ["<p0>", "<p1>", "<p2>"] and (rd / "eval" / "attention" / drawn[0]["rollout_png"]).is_file()

    # serve: the engine loads model/ and classifies one text as peft's model does
    engine = load_engine(rd / "model")
    text = "服务很好，推荐"
    want = _reference_classifier(root, rd)(**tokenizer([text], return_tensors="pt")).logits.softmax(-1)[0]
    got = engine.classify([text])[0]
    assert [got[lab] for lab in engine.labels] == pytest.approx(want.tolist(), abs=1e-5)
    # a text's answer does not depend on the longer texts batched with it (the head reads its last real token)
    assert engine.classify([text, "房间很干净，服务很好，质量不错，很满意，推荐"])[0] == pytest.approx(got, abs=1e-6)

    # … and over HTTP: /v1/classify and the OpenAI chat endpoint
    server, _ = start_server(str(rd))
    try:
        clf = httpx.post(f"{server.url}/v1/classify", json={"input": [text]}, timeout=60).json()
        assert clf["data"][0]["probabilities"] == pytest.approx(got, abs=1e-5)
        chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                          json={"model": clf["model"], "messages": [{"role": "user", "content": text}]}).json()
        assert chat["choices"][0]["message"]["content"] == max(got, key=got.get)
    finally:
        server.stop()

    with pytest.raises(UserError, match="prompt-tuned model .*compress"):
        run_pipeline(_config(root, "prompt", {"method": "prompt"}, compress={"int8": True}), only=("compress",))


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_prompt_and_prefix_tuned_lm_runs_are_evaluated_and_refused_by_the_generator_engine(root, method):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainforge.evaluate.lm import text_nll
    from trainforge.serve.engine import load_engine

    sft = {"template": "{text}", "label_names": {"positive": "好", "negative": "差"}, "generate_examples": 0}
    result = run_pipeline(_config(root, f"lm-{method}", {"method": method, "task": "sft", "sft": sft},
                                  eval={"split": "test", "generate_examples": 2}))
    rd = root / f"lm-{method}"
    model_m = json.loads((rd / "eval" / "metrics.json").read_text())["model"]
    assert {"token_perplexity", "bleu", "exact_match"} <= set(model_m)

    tokenizer = AutoTokenizer.from_pretrained(rd / "model")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base-lm"), rd / "adapter").eval()
    texts = [json.loads(line)["text"] for line in (rd / "data" / "test.jsonl").read_text().splitlines()]
    nll, n_tok, _ = text_nll(reference, tokenizer, texts, 32)
    assert model_m["token_perplexity"] == pytest.approx(torch.tensor(nll / n_tok).exp().item(), rel=1e-4)
    assert result.metrics["eval"]["model_token_perplexity"] == model_m["token_perplexity"]

    with pytest.raises(UserError, match=f"{method}-tuned model .*KV-cache decoder"):
        load_engine(rd / "model")


def test_prefix_tuned_classifier_trains_or_says_why_not(root):
    """peft 0.21 + transformers 5.2x cannot run prefix tuning on a sequence classifier (see methods.py);
    when a release pair can, the run must be usable like a prompt-tuned one."""
    cfg = _config(root, "prefix", {"method": "prefix"}, eval={"split": "test", "adversarial": {"samples": 0, "perturbation_samples": 0}})
    try:
        run_pipeline(cfg)
    except UserError as e:
        assert "train.method=prefix" in str(e) and "use train.method=prompt or lora" in str(e)
        return
    assert json.loads((root / "prefix" / "eval" / "metrics.json").read_text())["n"] == 12


def test_unmerged_lora_run_loads_as_the_merged_model(root):
    from transformers import AutoTokenizer

    from trainforge.models.load import load_classifier

    run_pipeline(_config(root, "lora", {"method": "lora", "lora": {"r": 4, "merge": False}}))
    rd = root / "lora"
    assert (rd / "model" / "adapter_config.json").is_file() and (rd / "model" / "base" / "model.safetensors").is_file()
    recorded = json.loads((rd / "model" / "adapter_config.json").read_text())
    recorded["base_model_name_or_path"] = str(root / "moved-away")  # the training-time base path is gone: no matter
    (rd / "model" / "adapter_config.json").write_text(json.dumps(recorded))
    model = load_classifier(rd / "model")
    assert type(model).__name__ == "LlamaForSequenceClassification"  # merged on load: a plain transformers model
    batch = AutoTokenizer.from_pretrained(rd / "model")(["服务很好", "质量太差了"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, _reference_classifier(root, rd)(**batch).logits, atol=1e-5)


def test_adapter_dir_without_base_is_a_user_error(tmp_path):
    from trainforge.models.load import load_classifier

    (tmp_path / "model").mkdir()  # an adapter directory without base/, as runs before model/base/ existed
    (tmp_path / "model" / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    with pytest.raises(UserError, match="no base model in .*base"):
        load_classifier(tmp_path / "model")


def test_prompt_tuned_decoder_classifier_trains_on_the_last_real_token(llama_classifier):
    """The model the loop trains (methods.py), not only the loaded one, reads each row's last real token."""
    from tests.train.conftest import PAD
    from trainforge.train.config import TrainConfig
    from trainforge.train.methods import apply_method

    model = apply_method(llama_classifier, TrainConfig(method="prompt", prompt={"virtual_tokens": 3}), 1).model.eval()
    short, long = [1, 9, 10, 2], [1, 11, 12, 13, 14, 15, 16, 2]
    batch = torch.tensor([short + [PAD] * 4, long])
    mask = (torch.arange(8) < torch.tensor([[4], [8]])).long()
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([short])).logits[0]
        batched = model(input_ids=batch, attention_mask=mask).logits[0]
    assert torch.allclose(alone, batched, atol=1e-5)
