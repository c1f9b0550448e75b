"""Knowledge distillation: a fine-tuned teacher into a shallower student of the same family.

    loss = α · T² · KL(softmax(teacher/T) ‖ softmax(student/T))      soft targets (Hinton et al., 2015)
         + (1 − α) · CE(student, labels)                               hard labels
         + β · Σ_j MSE(h_student[j], h_teacher[map[j]])                optional hidden-state matching

T² keeps the soft term's gradient the same size whatever the temperature (the softened logits'
gradients shrink as 1/T²). The student copies the embeddings, head and evenly spaced teacher layers
(DistilBERT's initialisation), so it starts close to the teacher instead of from noise; that works
for BERT- and Llama-style models alike because both number their blocks `layer.N` / `layers.N`.
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from trainforge.compress.config import DistillConfig
from trainforge.batching import Encoded, model_device, predict_logits

_LAYER_KEY = re.compile(r"\.(layer|layers)\.(\d+)\.")


def teacher_layers_for(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher blocks, always ending with the last: 6→3 gives [1, 3, 5]."""
    return [(j + 1) * n_teacher // n_student - 1 for j in range(n_student)]


def build_student(teacher: nn.Module, n_layers: int | None, from_teacher: bool = True) -> tuple[nn.Module, list[int]]:
    """A copy of the teacher's architecture with fewer blocks, initialised from the teacher (or at random)."""
    from trainforge.models.load import classifier_from_config

    n_teacher = teacher.config.num_hidden_layers
    n_layers = n_layers or max(1, n_teacher // 2)
    if not 1 <= n_layers < n_teacher:
        from trainforge.errors import UserError

        raise UserError(f"compress.distill.student_layers: {n_layers} must be between 1 and {n_teacher - 1} (the teacher has {n_teacher})")
    mapping = teacher_layers_for(n_teacher, n_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = n_layers
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds (Llama-style configs)
        config.layer_types = [config.layer_types[i] for i in mapping]
    student = classifier_from_config(config)  # the teacher's class: a concat-pooled teacher gets a concat-pooled student
    if not from_teacher:
        return student, mapping
    position = {t: j for j, t in enumerate(mapping)}
    state = {}
    for key, value in teacher.state_dict().items():
        m = _LAYER_KEY.search(key)
        if m is None:
            state[key] = value.clone()
        elif int(m.group(2)) in position:
            state[key[: m.start()] + f".{m.group(1)}.{position[int(m.group(2))]}." + key[m.end():]] = value.clone()
    student.load_state_dict(state, strict=True)
    return student, mapping


def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float) -> torch.Tensor:
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    log_target=True, reduction="batchmean") * t * t
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def mean_kl(student: nn.Module, teacher: nn.Module, enc: Encoded, pad_id: int) -> float:
    """KL(teacher ‖ student) per example at T=1: how far the student's predictions are from the teacher's."""
    s, t = predict_logits(student, enc, 64, pad_id), predict_logits(teacher, enc, 64, pad_id)
    return float(F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean"))


def distill(teacher: nn.Module, train: Encoded, cfg: DistillConfig, pad_id: int, seed: int) -> tuple[nn.Module, dict]:
    """Build and train the student on the teacher's device; returns (student, summary)."""
    from trainforge.compress.finetune import train_steps

    torch.manual_seed(seed)
    student, mapping = build_student(teacher, cfg.student_layers, cfg.init_from_teacher)
    student.to(model_device(teacher))
    teacher.eval()
    steps = cfg.max_steps or max(1, int(round(cfg.epochs * math.ceil(len(train) / cfg.batch_size))))
    want_hidden = cfg.hidden_loss_weight > 0

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            t_out = teacher(**inputs, output_hidden_states=want_hidden)
        s_out = model(**inputs, output_hidden_states=want_hidden)
        loss = distillation_loss(s_out.logits, t_out.logits, labels, cfg.alpha, cfg.temperature)
        if want_hidden:
            # hidden_states[0] is the embedding output; student block j mirrors teacher block mapping[j]
            mask = batch["attention_mask"].unsqueeze(-1).float()  # B, T, 1: padding does not count
            pairs = [(s_out.hidden_states[j + 1], t_out.hidden_states[t + 1]) for j, t in enumerate(mapping)]
            mse = sum(((hs - ht) ** 2 * mask).sum() / (mask.sum() * hs.shape[-1]) for hs, ht in pairs) / len(pairs)
            loss = loss + cfg.hidden_loss_weight * mse
        return loss

    last = train_steps(student, train, steps, cfg.lr, cfg.batch_size, pad_id, seed, loss_fn, "distill")
    return student, {"student_layers": len(mapping), "teacher_layers": mapping, "steps": steps, "final_loss": round(last, 5)}
