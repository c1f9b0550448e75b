"""Preference pairs, log-probs under left padding, the reference log-probs store, and the DPO loop's behaviour."""

from __future__ import annotations

import pytest
import torch

from tests.posttrain.conftest import make_lm, make_tokenizer, review_rows
from trainforge.errors import UserError
from trainforge.posttrain.dpo import LossSettings, pair_batch, sequence_logps
from trainforge.posttrain.dpo_loop import batch_of, fit_dpo, reference_logps
from trainforge.posttrain.preference import (
    encode_pairs,
    load_judge,
    pairs_from_labels,
    pairs_from_records,
    pairs_from_samples,
)
from trainforge.tasks.info import PromptFormat
from trainforge.train.config import LoopConfig

FMT = PromptFormat(template="Good? {text}", label_names={"pos": "yes", "neg": "no"})


@pytest.fixture(scope="module")
def tiny():
    rows = review_rows(24)
    tok = make_tokenizer(rows)
    pairs, _ = pairs_from_labels(rows, FMT)
    return rows, tok, encode_pairs(pairs, tok, 64)


@pytest.fixture(scope="module")
def always_yes(tiny):
    """Pairs a few steps can learn: over varied prompts, chosen is always one answer and rejected another."""
    rows, tok, _ = tiny
    return encode_pairs(pairs_from_records([{"prompt": r["text"], "chosen": "yes great", "rejected": "no"} for r in rows]), tok, 64)


def test_labelled_records_give_the_right_answer_as_chosen_and_each_other_label_as_rejected():
    rows = [{"id": 1, "text": "great", "label": "pos"}, {"id": 2, "text": "sad", "label": "neg"}, {"id": 3, "text": "x"}]
    pairs, dropped = pairs_from_labels(rows, FMT)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Good? great", "yes", "no"), ("Good? sad", "no", "yes")]
    assert dropped == {"no_label": 1}
    three = [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": "z"}]
    assert len(pairs_from_labels(three, PromptFormat())[0]) == 6  # one pair per wrong label
    with pytest.raises(UserError, match="two labels"):
        pairs_from_labels([{"text": "a", "label": "x"}], PromptFormat())


def test_given_records_take_strings_or_chat_messages(tiny):
    _, tok, _ = tiny
    rows = [{"prompt": "hi", "chosen": "yes", "rejected": "no"},
            {"prompt": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}],
             "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}],
             "rejected": [{"role": "assistant", "content": "no"}]}]
    pairs = pairs_from_records(rows)
    assert [(p.chosen, p.rejected) for p in pairs] == [("yes", "no"), ("yes", "no")]
    enc = encode_pairs(pairs, tok, 64)
    # a string prompt is one user turn through the chat template, exactly as SFT and serve frame it
    assert enc.prompt[0] == tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                    tokenize=True, return_dict=False)
    assert enc.prompt[1] != enc.prompt[0] and enc.chosen[0][-1] == tok.eos_token_id
    with pytest.raises(UserError, match="rejected"):
        pairs_from_records([{"prompt": "hi", "chosen": "yes"}])
    with pytest.raises(UserError, match="assistant"):
        pairs_from_records([{"prompt": "hi", "chosen": [{"role": "user", "content": "x"}], "rejected": "no"}])


def test_judged_samples_pick_best_and_worst_skip_none_and_count_ties():
    judge = load_judge("tests.posttrain.judges:prefers_short")
    answers = {"p1": ["aaa", "a", "", "aa"], "p2": ["bb", "bb", "bb", ""], "p3": ["", "", "c", ""]}
    rows = [{"id": k, "extra": k} for k in answers]
    pairs, dropped = pairs_from_samples(rows, list(answers), lambda prompts, n: [answers[p][:n] for p in prompts], judge, 4)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("p1", "a", "aaa")]
    assert dropped == {"unscored": 5, "all_tied": 1, "too_few_scored": 1}
    with pytest.raises(UserError, match="cannot import"):
        load_judge("tests.posttrain.judges:nope")


def test_pairs_from_answers_the_model_samples(tiny):
    """The sampled path end to end: n answers per prompt from the model's generate, judged, every prompt accounted for;
    sampling is seeded and leaves the global RNG as it found it."""
    from trainforge.posttrain.preference import generate_samples

    rows, tok, _ = tiny
    model = make_lm(tok)
    prompts = [r["text"] for r in rows[:6]]
    sample = generate_samples(model, tok, max_new_tokens=4, temperature=1.5, seed=1)
    state = torch.random.get_rng_state()
    answers = sample(prompts, 3)
    assert torch.equal(torch.random.get_rng_state(), state) and answers == sample(prompts, 3)
    assert [len(a) for a in answers] == [3] * 6
    judge = load_judge("tests.posttrain.judges.prefers_short")
    pairs, dropped = pairs_from_samples(rows[:6], prompts, sample, judge, 3)
    assert len(pairs) + dropped["all_tied"] + dropped["too_few_scored"] == 6 and pairs
    assert all(len(p.chosen) < len(p.rejected) for p in pairs)


def gpt2_lm(tok):
    """Absolute position embeddings: where left padding without position ids visibly goes wrong (RoPE models such
    as Llama see only relative positions, so a constant shift hides the bug there)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=128,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_left_padded_logps_equal_one_at_a_time(tiny, family):
    _, tok, enc = tiny
    model = (make_lm(tok) if family == "llama" else gpt2_lm(tok)).eval()
    idx = list(range(8))
    assert len({len(enc.prompt[i]) for i in idx}) > 1  # rows of different lengths: real left padding
    with torch.no_grad():
        batched = sequence_logps(model, batch_of(enc, idx, tok.pad_token_id))
        alone = [sequence_logps(model, batch_of(enc, [i], tok.pad_token_id)) for i in idx]
        unpositioned = sequence_logps(model, batch_of(enc, idx, tok.pad_token_id), position_ids=False)
    chosen, rejected = batched.answer.chunk(2)
    assert torch.allclose(chosen, torch.cat([a.answer[:1] for a in alone]), atol=1e-5)
    assert torch.allclose(rejected, torch.cat([a.answer[1:] for a in alone]), atol=1e-5)
    assert torch.allclose(batched.row.chunk(2)[0], torch.cat([a.row[:1] for a in alone]), atol=1e-5)
    if family == "gpt2":  # without position ids a padded row's positions start at its padding: its log-probs change
        assert not torch.allclose(unpositioned.answer.chunk(2)[0], chosen, atol=1e-3)


def test_pair_batch_masks():
    b = pair_batch([[5, 6], [7]], [[8, 2], [9, 9, 2]], [[10, 2], [2]], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 8, 2], [7, 9, 9, 2], [5, 6, 10, 2], [0, 0, 7, 2]]
    assert b["position_ids"].tolist()[3] == [0, 0, 0, 1] and b["attention_mask"].tolist()[3] == [0, 0, 1, 1]
    assert b["completion_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]


def test_reference_logps_are_stored_and_reused_and_refused_for_other_pairs(tiny, tmp_path):
    _, tok, enc = tiny
    model = make_lm(tok)
    path = tmp_path / "ref.pt"
    cpu = torch.device("cpu")
    first, seconds = reference_logps(model, {"train": enc}, path, tok.pad_token_id, 8, cpu, "fp32", resume=False)
    assert path.is_file() and seconds > 0 and first["train"][0].shape == (len(enc),)
    again, seconds = reference_logps(model, {"train": enc}, path, tok.pad_token_id, 8, cpu, "fp32", resume=True)
    assert seconds == 0.0 and torch.equal(again["train"][0], first["train"][0])
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # the policy has moved: stored log-probs cannot be recomputed on resume
    with pytest.raises(UserError, match="cannot be recomputed"):
        reference_logps(model, {"train": enc}, path, tok.pad_token_id, 8, cpu, "fp32", resume=True)


def test_precomputed_reference_trains_exactly_as_a_loaded_reference(tiny, always_yes):
    """The memory saving changes nothing: the same pairs, steps and weights as scoring a frozen copy each step."""
    import copy

    _, tok, _ = tiny
    enc = always_yes
    cfg = LoopConfig(max_steps=8, batch_size=8, lr=2e-2, log_every=1000, schedule={"warmup_ratio": 0.0})
    a, b = make_lm(tok), make_lm(tok)
    ref, _ = reference_logps(a, {"train": enc}, None, tok.pad_token_id, 8, torch.device("cpu"), "fp32", False)
    frozen = copy.deepcopy(b)
    ra = fit_dpo(a, enc, None, cfg, LossSettings("sigmoid", 0.2), tok.pad_token_id, 3, reference=ref)
    rb = fit_dpo(b, enc, None, cfg, LossSettings("sigmoid", 0.2), tok.pad_token_id, 3, ref_model=frozen)
    assert [h["loss"] for h in ra.history] == pytest.approx([h["loss"] for h in rb.history], abs=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
    assert ra.history[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # step 1: the policy IS the reference, loss = log 2
    assert abs(ra.history[0]["rewards/margins"]) < 1e-5  # 0 up to the float noise of other batch shapes
    assert ra.history[-1]["rewards/margins"] > 0 and ra.history[-1]["rewards/accuracies"] > 0.5


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"])
def test_each_loss_raises_the_chosen_answers_margin(tiny, always_yes, kind):
    _, tok, _ = tiny
    enc = always_yes
    model = make_lm(tok)
    ref = None
    if kind not in ("simpo", "orpo"):
        ref, _ = reference_logps(model, {"train": enc, "val": enc}, None, tok.pad_token_id, 8, torch.device("cpu"), "fp32", False)
    cfg = LoopConfig(max_steps=12, batch_size=8, lr=2e-2, eval_every=12, log_every=1000, schedule={"warmup_ratio": 0.0})
    settings = LossSettings(kind, beta=2.0 if kind == "simpo" else 0.1, label_smoothing=0.1 if kind == "robust" else 0.0)
    result = fit_dpo(model, enc, enc, cfg, settings, tok.pad_token_id, 0, reference=ref)
    first, last = result.history[0], result.history[-1]
    assert last["rewards/margins"] > first["rewards/margins"]
    assert result.evals[-1]["val_rewards/accuracies"] > 0.5


@pytest.mark.gpu
def test_dpo_runs_on_cuda_in_bf16(tiny, always_yes):
    """The same recipe on a GPU: bf16 autocast (precision auto), SDPA attention, the reference log-probs scored there."""
    _, tok, _ = tiny
    cuda = torch.device("cuda")
    model = make_lm(tok, attn_implementation="sdpa")
    ref, _ = reference_logps(model.to(cuda), {"train": always_yes}, None, tok.pad_token_id, 8, cuda, "bf16", False)
    cfg = LoopConfig(max_steps=8, batch_size=8, lr=2e-2, log_every=1000, precision="auto", schedule={"warmup_ratio": 0.0})
    result = fit_dpo(model, always_yes, None, cfg, LossSettings("sigmoid", 0.1), tok.pad_token_id, 0, reference=ref, device=cuda)
    assert next(model.parameters()).device.type == "cuda"
    assert result.history[-1]["rewards/margins"] > result.history[0]["rewards/margins"]
