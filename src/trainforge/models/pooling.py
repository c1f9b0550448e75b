"""ULMFiT's concat pooling for a Llama decoder classifier.

transformers' LlamaForSequenceClassification reads one state: the last real token's. A decoder
pretrained as a language model puts next-token information there, not a summary of the text, so
ULMFiT (Howard & Ruder, 2018, §3.3) pools three views of every position and lets the head pick:

    hidden (B, T, C) ──► [ last real token ; mean over real tokens ; max over real tokens ] (B, 3C)
                    ──► score: Linear(3C → labels)

Measured on the quickstart reviews it is within noise of the last-token head: better on a body
pretrained on the reviews alone (val 0.860 vs 0.853), worse on the news + reviews body the
quickstart uses (val 0.855 vs 0.859); see benchmarks/README.md, ulmfit_ablation.py.

The saved config.json keeps model_type "llama" (so LoRA targets, pruning and decoder checks work
unchanged) and names this class in `architectures` with `classifier_pooling: concat`; load it with
`trainforge.models.load.load_classifier`, which dispatches on that name. A plain
AutoModelForSequenceClassification refuses the (labels, 3C) head loudly instead of mis-pooling.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaForSequenceClassification
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

ARCHITECTURE = "LlamaForConcatPoolClassification"


class LlamaForConcatPoolClassification(LlamaForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        config.classifier_pooling = "concat"
        self.score = nn.Linear(3 * config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                **kwargs) -> SequenceClassifierOutputWithPast:
        kwargs.pop("use_cache", None)
        out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         inputs_embeds=inputs_embeds, use_cache=False, **kwargs)
        hidden = out.last_hidden_state  # B, T, C
        if attention_mask is None:  # no mask: every position is real unless it is the pad id
            attention_mask = (input_ids != self.config.pad_token_id) if input_ids is not None and self.config.pad_token_id is not None \
                else torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # B, T, 1
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (positions * attention_mask.to(torch.long)).argmax(-1)  # B: rightmost real token (either padding side)
        pooled = torch.cat([
            hidden[torch.arange(hidden.shape[0], device=hidden.device), last],
            (hidden * real).sum(1) / real.sum(1).clamp(min=1.0),
            hidden.masked_fill(real == 0, torch.finfo(hidden.dtype).min).amax(1),
        ], dim=-1)  # B, 3C
        logits = self.score(pooled)
        loss = None
        if labels is not None:
            # transformers picks a loss by class name, and this name does not end in ForSequenceClassification
            loss = ForSequenceClassificationLoss(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                               attentions=out.attentions)
