"""Tokenizers: train a byte-level BPE on the corpus with the `tokenizers` library, or reuse a model's.

Byte-level BPE never meets an unknown character (every string is bytes), and on Chinese its merges
learn whole characters first, then frequent words, so a review costs about one token per
character or fewer instead of three bytes each.

Two framings of the same BPE, declared with each family (models/families.py, `Family.bpe`):
    encoder (bert):  [CLS] text [SEP]      the classifier pools [CLS]
    decoder (llama): <s> text </s>         the classifier pools the last real token, </s>;
                                           packed pretraining text is <s> doc </s> <s> doc </s> …
"""

from __future__ import annotations

from typing import Iterable, Literal

from trainforge.errors import UserError
from trainforge.models.families import family_named

# A chat template saved with the tokenizer (tokenizer_config.json) so `apply_chat_template` and
# serving frame a conversation exactly the way SFT did. The role markers are plain text.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int, max_length: int,
              family: Literal["bert", "llama"] = "bert"):
    """Train on `texts`; returns a transformers PreTrainedTokenizerFast ready to save_pretrained.
    `family` names a registered family that declares a BPE framing (bert, llama)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    framing = family_named(family).bpe
    if framing is None:
        raise UserError(f"model family {family!r} has no BPE framing to train a tokenizer from scratch; "
                        f"use its pretrained tokenizer (train.tokenizer.kind=pretrained)")
    specials = dict(framing.specials)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(specials.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    first, last = framing.first, framing.last
    tok.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=f"{first} $A {last} $B {last}",
        special_tokens=[(first, tok.token_to_id(first)), (last, tok.token_to_id(last))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **specials)


def special_ids(tokenizer) -> dict:
    """The ids a model config needs: pad/bos/eos where the tokenizer has them."""
    out = {"pad_token_id": tokenizer.pad_token_id}
    if tokenizer.bos_token_id is not None:
        out["bos_token_id"] = tokenizer.bos_token_id
    if tokenizer.eos_token_id is not None:
        out["eos_token_id"] = tokenizer.eos_token_id
    return out


def load_tokenizer(path, max_length: int | None = None):
    """A saved tokenizer (a model directory's, or a run's tokenizer/), the one place its pad token is settled:
    decoders often ship without one, and batching needs it, so it falls back to the end-of-text token.
    `max_length` caps what truncation keeps (train.max_length)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if max_length is not None:
        tokenizer.model_max_length = max_length
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
