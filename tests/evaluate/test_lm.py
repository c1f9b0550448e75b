"""The n-gram LM baseline is a proper distribution; the model's NLL matches Hugging Face's own loss."""

from __future__ import annotations

import math
import random

import pytest
import torch

from trainforge.evaluate.lm import text_nll
from trainforge.evaluate.ngram_lm import EOS, CharNgramLM

from .conftest import char_tokenizer, make_rows

CORPUS = ["今天天气很好", "今天心情很好", "明天天气不好", "我们今天去公园", "公园里人很多"] * 3


@pytest.mark.parametrize("history", ["", "今", "今天", "xyz", "天气"])
def test_ngram_probabilities_sum_to_one(history):
    lm = CharNgramLM(3).fit(CORPUS)
    unseen = "\ue000"  # a character the corpus never had: its probability is the unseen mass
    total = sum(lm.prob(history, c) for c in lm.vocab) + lm.prob(history, unseen)
    assert total == pytest.approx(1.0)


def test_ngram_prefers_in_domain_text():
    lm = CharNgramLM(3).fit(CORPUS)
    rng = random.Random(0)
    text = "今天天气很好"
    shuffled = "".join(rng.sample(text, len(text)))
    ppl = lambda t: math.exp(lm.nll(t)[0] / lm.nll(t)[1])  # noqa: E731
    assert ppl(text) < ppl(shuffled) < ppl("完全没见过的字")
    assert lm.nll(text)[1] == len(text) + 1 and EOS in lm.vocab


def test_model_nll_matches_hf_loss():
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                                         pad_token_id=0)).eval()
    texts = [r["text"] for r in make_rows(3, seed=0)]
    total, n_tok, covered = text_nll(model, tok, texts, max_length=64, batch_size=2)  # padded batches
    expected, expected_tok = 0.0, 0
    for t in texts:
        ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            expected += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
        expected_tok += ids.shape[1] - 1
    assert n_tok == expected_tok and covered == [len(t) for t in texts]
    assert total == pytest.approx(expected, rel=1e-4)


def test_eval_command_on_a_causal_lm_run(tmp_path):
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    from trainforge.cli import main

    from .conftest import write_run

    tok = char_tokenizer()
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64, pad_token_id=0))
    patterned = [{"id": f"p{i}", "text": ["这个东西我们买了", "书店酒房间服务", "质量价格物流包装内容"][i % 3], "label": "positive"}
                 for i in range(60)]  # repetitive text: a trigram LM nails it, an untrained model cannot
    run = write_run(tmp_path, "lm", (model, tok, patterned), n_test=10)
    (run / "data" / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in patterned[:9]))
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["task"] == "language_modeling" and m["headline"] == "char_perplexity"
    # an untrained model is near-uniform over its vocabulary: the trigram LM must beat it, and the report says so
    assert m["model"]["char_perplexity"] > m["baseline"]["char_perplexity"] and not m["model_beats_baseline"]
    assert "loses to" in (run / "report.html").read_text()


def test_sft_run_scores_generations_beside_a_retrieval_baseline(tmp_path):
    import json

    import yaml
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainforge.cli import main
    from trainforge.tasks import ModelSpec, SFTTask, write_model_info
    from trainforge.train.config import TrainConfig

    from .conftest import write_run

    tok = char_tokenizer()
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=128,
                                         pad_token_id=0, bos_token_id=2, eos_token_id=3))
    run = write_run(tmp_path, "sft", (model, tok, make_rows(30, seed=1)), n_test=6)
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    cfg["train"] = {"task": "sft", "max_length": 64, "sft": {"label_names": {"positive": "好", "negative": "差"}, "max_new_tokens": 2}}
    cfg["eval"] = {"generate_examples": 6}
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    # what the train stage writes beside an SFT model: eval reads the task and prompt format from here
    task = SFTTask.from_config(TrainConfig.model_validate(cfg["train"]))
    write_model_info(run / "model", task.model_info(ModelSpec("dir", 64), model, "full", adapter=False))
    assert main(["eval", str(run)]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["task"] == "sft" and m["baseline"]["name"] == "char-3gram-kneser-ney + tfidf-retrieval"
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "exact_match", "char_perplexity"):
        assert key in m["model"] and key in m["baseline"]
    # the retrieval baseline answers with a training label word: 好 or 差, so it gets some exactly right
    assert 0 < m["baseline"]["exact_match"] <= 1
    # an SFT model is judged on its answers; perplexity on raw text is reported beside them
    assert m["headline"] == "exact_match"
    assert m["model_beats_baseline"] == (m["model"]["exact_match"] > m["baseline"]["exact_match"])
