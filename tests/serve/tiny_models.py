"""Tiny models built from configs for serving tests and benchmarks (no download, seconds to build).

- a byte-level BPE tokenizer trained on a few sentences (any text encodes; nothing is <unk>)
- a LlamaForCausalLM with a chat template, saved as safetensors
- a BertForSequenceClassification taught a trivial rule in a few steps, so its predictions mean something
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "serving models with batching and a kv cache",
    "这个酒店的房间很干净，服务也很好",
    "质量太差了，再也不会买了",
    "hello world, how are you today?",
] * 20

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=512)


def build_tiny_llama(path: Path, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=512, initializer_range=0.2, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def rule_label(text: str) -> str:
    """The planted truth the tiny classifier learns: Chinese text is 'positive', the rest 'negative'."""
    return "positive" if any("\u4e00" <= c <= "\u9fff" for c in text) else "negative"


RULE_TEXTS = ["房间很干净", "服务很好", "质量太差", "再也不会买", "很好很好", "不错",
              "hello world", "the lazy dog", "kv cache", "how are you", "quick fox", "batching"]


def build_tiny_classifier(path: Path, seed: int = 0, flipped: bool = False) -> Path:
    """A 2-layer BERT trained for a few steps on `rule_label`; `flipped` swaps its two output rows (a bad model)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    id2label = {0: "negative", 1: "positive"}
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2, id2label=id2label,
                        label2id={v: k for k, v in id2label.items()}, pad_token_id=tokenizer.pad_token_id)
    model = BertForSequenceClassification(config)
    enc = tokenizer(RULE_TEXTS, padding=True, return_tensors="pt")
    y = torch.tensor([config.label2id[rule_label(t)] for t in RULE_TEXTS])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**enc, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    if flipped:
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
