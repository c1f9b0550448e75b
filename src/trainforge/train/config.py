"""Config of the pretrain and train stages: tokenizer, model, method and the optimisation recipe.

`LoopConfig` is the recipe the loop reads (optimiser, schedule, precision, checkpoints); both
`PretrainConfig` and `TrainConfig` carry one, so the same loop runs both stages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainforge.audio.config import AudioConfig
from trainforge.data.config import SourceConfig
from trainforge.posttrain.dpo_config import DpoConfig
from trainforge.posttrain.grpo_config import GrpoConfig
from trainforge.section import Section
from trainforge.vision.config import ImageConfig


class TokenizerConfig(Section):
    kind: Literal["bpe", "pretrained"] = "bpe"
    """bpe: train a byte-level BPE on the training text; pretrained: use the model directory's."""
    vocab_size: int = 8000
    """BPE vocabulary size; larger covers more whole words, costs embedding (and LM-head) compute."""
    min_frequency: int = 2
    """A merge must occur this often in the corpus to enter the vocabulary."""


class ScheduleConfig(Section):
    warmup_ratio: float = 0.05
    """Share of steps spent ramping the learning rate linearly from 0."""
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    """Shape of the learning rate after warmup."""
    min_lr_ratio: float = 0.0
    """Floor of the decay, as a share of the peak learning rate."""


class LoopConfig(Section):
    """The optimisation recipe the training loop reads."""

    epochs: float = 3.0
    """Passes over the training data (fractions allowed)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps; overrides epochs when set."""
    batch_size: int = 32
    """Examples (or packed sequences) per optimiser step, summed over ranks and accumulation."""
    grad_accum: int = 1
    """Micro-batches per optimiser step; raised automatically when the memory estimate exceeds the machine."""
    lr: float = 5.0e-4
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW decay on matrices (never on biases, norms or other 1-d parameters)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas; 0.98 is steadier than 0.999 for short runs."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 disables."""
    schedule: ScheduleConfig = ScheduleConfig()
    """Learning-rate schedule."""
    eval_every: int | None = None
    """Evaluate on val every N optimiser steps; null evaluates once per epoch."""
    early_stopping: int | None = None
    """Stop after this many evaluations without improvement; null never stops early."""
    precision: Literal["auto", "native", "fp32", "bf16", "fp16"] = "auto"
    """Autocast dtype. auto: bf16 on a GPU that has it, fp32 on CPU (trainforge/device.py); native: also bf16 on a CPU
    with bf16 units (AMX, AVX512-BF16), fp32 where bf16 would be emulated (AVX2). fp16 adds loss scaling
    on CUDA. bf16/fp16 halve activation memory; weights stay fp32 masters (a half-precision checkpoint is upcast)."""
    deterministic: bool = False
    """Deterministic GPU kernels (cuDNN, cuBLAS, scatter): bit-identical reruns and resumes for 5-30% of step time."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: about a third more compute for a fraction of the memory."""
    dist_timeout_minutes: float = 30.0
    """Under torchrun: how long a rank waits for the others (e.g. while rank 0 alone runs eval) before failing."""
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    """Attention kernel: auto is transformers' default (sdpa where it can); flash_attention_2 needs a CUDA GPU and
    `pip install flash-attn` (less memory on long sequences); eager is the reference (and returns attention maps)."""
    chunked_ce: int | None = Field(None, ge=1)
    """Causal-LM losses (pretrain, task sft): tokens per chunk of a chunked, recomputed cross-entropy, so the
    B×T×vocab fp32 logits are never held (large vocabularies); null uses the model's own loss. Costs one more head pass."""
    optimizer: Literal["adamw", "paged_adamw_8bit"] = "adamw"
    """adamw (torch); paged_adamw_8bit: bitsandbytes' 8-bit states paged to host memory (QLoRA; CUDA + bitsandbytes)."""
    compile: bool = False
    """torch.compile the model (first steps are slow while it compiles; pays off on long runs)."""
    checkpoint_every: int | None = None
    """Write a resumable checkpoint every N steps (and at every evaluation); null: only at evaluations."""
    keep_checkpoints: int = 2
    """Keep the last K checkpoints (plus the best one)."""
    max_nonfinite: int = 5
    """Stop with an error after this many non-finite losses in a row (each one is skipped and counted)."""
    memory_limit_gb: float | None = None
    """Memory the estimate must fit; null uses 80% of the machine's available memory."""
    threads: int | None = None
    """torch intra-op threads; null uses every core."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: ddp replicates the model; fsdp (fully_shard) shards it for models that do not fit one device."""
    log_every: int = 10
    """Steps between progress-bar notes and per-step MLflow metrics."""
    resume: bool = Field(False, exclude=True)
    """Continue from the latest checkpoint (set by `trainforge train --resume`; not part of the cache key)."""

    @model_validator(mode="after")
    def _accumulation_divides_batch(self) -> "LoopConfig":
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})")
        return self


class MoeConfig(Section):
    """Mixture-of-experts training (train/moe.py); ignored by dense models."""

    bias_update_gamma: float = Field(1.0e-3, ge=0)
    """DeepSeek-V3's auxiliary-loss-free balancing: after each optimizer step every expert's routing bias moves by
    gamma × sign(mean load − its load), loads counted over the global batch; 0 turns it off (DeepSeek-V3: 0.001)."""
    aux_loss_alpha: float = Field(0.0, ge=0)
    """Weight of DeepSeek-V3's sequence-wise balance loss (alpha × Σ_i f_i P_i per sequence); 0 is off (V3: 1e-4)."""
    router_aux_loss_coef: float | None = Field(None, ge=0)
    """Mixtral / Qwen-MoE: weight of their own load_balancing_loss_func; null: the model config's
    router_aux_loss_coef (0.001 by default); 0 is off."""
    idle_window: int = Field(50, ge=1)
    """The health metric `idle` counts experts that received no token in the last N optimizer steps."""
    idle_warn_steps: int = Field(100, ge=1)
    """Warn (console and report) when an expert has received no token for this many steps in a row."""
    lora_experts: bool = False
    """method=lora: also adapt the routed experts' fused weights (peft target_parameters); false: attention only."""


class LoraConfig(Section):
    r: int = 8
    """Rank of the update; higher: more capacity and memory."""
    alpha: int = 16
    """Scale of the update is alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | Literal["auto", "all-linear"] = "auto"
    """Module names to adapt; auto picks the attention projections known for the architecture."""
    dora: bool = False
    """Weight-decomposed LoRA (DoRA): magnitude and direction trained apart; slower, often better at low r."""
    merge: bool = True
    """Merge the adapter into the base weights for model/ (adapter/ is always written too)."""
    quantize: Literal["4bit", "8bit"] | None = None
    """QLoRA: load the frozen base through bitsandbytes (4bit: NF4, double-quantised, bf16 compute) from a saved
    model directory; about a quarter (4bit) or half (8bit) of the base's bf16 memory. Needs CUDA and bitsandbytes."""


class PromptConfig(Section):
    virtual_tokens: int = 16
    """Learned tokens prepended (prompt tuning) or per-layer key/value prefixes (prefix tuning)."""


class FreezeConfig(Section):
    trainable_blocks: int = 2
    """method=freeze: train the top N transformer blocks and the head; the rest stays fixed."""
    unfreeze_every: int = 100
    """method=unfreeze: one more block (from the top) becomes trainable every this many steps."""
    unfreeze_unit: Literal["steps", "epochs"] = "steps"
    """Unit of unfreeze_every."""
    lr_decay: float = 2.6
    """Discriminative learning rates: each group below the head trains at lr / lr_decay^depth (ULMFiT: 2.6)."""


class SftConfig(Section):
    prompt_field: str = "prompt"
    """Record field with the instruction; when absent the prompt is built from `template` and the text."""
    response_field: str = "response"
    """Record field with the answer; when absent the record's label (mapped by `label_names`) is the answer."""
    template: str = "{text}"
    """Instruction built from a record's text when it has no prompt field."""
    label_names: dict[str, str] = {}
    """Label → answer text, e.g. {positive: 正面, negative: 负面}."""
    generate_examples: int = 32
    """After training, generate answers for this many val prompts (written to model/generations.jsonl)."""
    max_new_tokens: int = 16
    """Tokens generated per answer."""


class TrainConfig(LoopConfig):
    """Fine-tune a model for the task; writes model/ (and adapter/ for peft methods) in Hugging Face format."""

    task: Literal["classification", "sft", "dpo", "grpo", "image_classification", "clip", "audio_classification"] = "classification"
    """classification: a sequence classifier; sft: instruction tuning of a causal LM, loss on the response only;
    dpo: preference training of a causal LM (train.dpo; posttrain/dpo_loop.py);
    grpo: RL with verifiable rewards on a causal LM (posttrain/grpo_loop.py, the grpo: section);
    image_classification: an image → one of N labels (ViT, MobileNetV2, EfficientNet); clip: contrastive image–text;
    audio_classification: a clip → one of N labels (AST over log-mels; trainforge/audio/)."""
    method: Literal["full", "freeze", "unfreeze", "lora", "prompt", "prefix"] = "full"
    """full | freeze (top N blocks + head) | unfreeze (progressive, per-group lrs) | lora | prompt | prefix."""
    model: str = "encoder-tiny"
    """A preset (`trainforge models list`), `pretrain` (this run's pretrain/ output), or a local HF model directory."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Tokenizer to train or reuse (a pretrained or `pretrain` model always brings its own)."""
    max_length: int = 128
    """Tokens per example; longer ones are truncated."""
    dropout: float = 0.1
    """Dropout in the model; 0 for pretraining, 0.1+ for fine-tuning small data."""
    layer_lr_decay: float = Field(1.0, gt=0)
    """method=full: discriminative learning rates (ULMFiT): the group d below the head (top block d=1, …,
    embeddings deepest) trains at lr / layer_lr_decay^d; 1.0 trains every layer at lr."""
    pooling: Literal["last", "concat"] = "last"
    """Decoder classifiers: the last real token's state, or ULMFiT's [last; mean; max] of every position's state."""
    lm_loss: float = Field(0.0, ge=0)
    """Classification on a decoder body: add this weight × the next-token loss on each example's own text
    (an auxiliary LM objective, train/lm_loss.py): the body stays a language model while the head learns the
    labels. Costs one vocabulary projection per step, nothing at inference; 0 is off."""
    ensemble: int = Field(1, ge=1)
    """Classification: fine-tune this many classifiers with seeds seed, seed+1, … and average their probabilities
    (a deep ensemble saved as one model, models/ensemble.py). Costs K× the training and inference time."""
    lora: LoraConfig = LoraConfig()
    """method=lora."""
    prompt: PromptConfig = PromptConfig()
    """method=prompt or prefix."""
    freeze: FreezeConfig = FreezeConfig()
    """method=freeze or unfreeze."""
    sft: SftConfig = SftConfig()
    """task=sft (and the prompt framing of task=dpo)."""
    moe: MoeConfig = MoeConfig()
    """Mixture-of-experts models: load balancing, health metrics, LoRA on experts."""
    class_weights: Literal["balanced"] | dict[str, float] | None = None
    """task=classification: weight each example's loss by its class: balanced (n / (classes × class count), the
    skew undone without touching the data) or {label: weight}; null: unweighted. The data-side alternative is data.balance."""
    dpo: DpoConfig = DpoConfig()
    """task=dpo."""
    grpo: GrpoConfig = GrpoConfig()
    """task=grpo."""
    image: ImageConfig = ImageConfig()
    """task=image_classification or clip: image size and training augmentation (trainforge/vision/config.py)."""
    audio: AudioConfig = AudioConfig()
    """task=audio_classification: sample rate, log-mel shape, training noise (trainforge/audio/config.py)."""
    packing: bool = False
    """task=sft: concatenate each micro-batch into one row with restarting position_ids (no padding computed);
    needs a kernel that keeps packed examples apart (flash_attention_2, or transformers' sdpa/eager packed mask)."""

    @model_validator(mode="after")
    def _options_the_method_supports(self) -> "TrainConfig":
        if self.ensemble > 1 and (self.task != "classification" or self.method not in ("full", "freeze", "unfreeze")):
            raise ValueError(f"ensemble={self.ensemble} is for task classification with method full, freeze or unfreeze "
                             f"(got task {self.task}, method {self.method}); set ensemble: 1")
        if self.lm_loss and (self.task != "classification" or self.method in ("prompt", "prefix")):
            raise ValueError(f"lm_loss={self.lm_loss} is for task classification with method full, freeze, unfreeze or lora "
                             f"(got task {self.task}, method {self.method}: "
                             f"{'sft already trains on next tokens' if self.task == 'sft' else 'virtual tokens shift the text'}); "
                             f"set lm_loss: 0")
        if self.class_weights is not None and (self.task != "classification" or self.lm_loss):
            raise ValueError(f"class_weights is for task classification without lm_loss (got task {self.task}, "
                             f"lm_loss {self.lm_loss}); set class_weights: null")
        if self.lora.quantize and (self.method != "lora" or self.task != "sft"):
            raise ValueError(f"lora.quantize={self.lora.quantize} is for method lora with task sft "
                             f"(got task {self.task}, method {self.method}); set lora.quantize: null")
        if self.packing and (self.task != "sft" or self.method in ("prompt", "prefix")):
            raise ValueError(f"packing=true is for task sft with method full, freeze, unfreeze or lora "
                             f"(got task {self.task}, method {self.method}"
                             f"{': virtual tokens shift the packed positions' if self.method in ('prompt', 'prefix') else ''}); "
                             f"set packing: false")
        return self


class PretrainConfig(LoopConfig):
    """Pretrain a causal LM from scratch on general text, then (optionally) on the run's unlabelled in-domain text.

    Writes pretrain/ (HF causal LM + tokenizer) that `train.model: pretrain` loads as the classifier body.
    """

    corpus: list[SourceConfig] = [SourceConfig(builtin="peoples-daily-1998", label_field=None)]
    """General-domain text (built-ins or files); labels are ignored."""
    corpus_limit: int | None = None
    """Use at most this many corpus documents (smoke runs); null uses all."""
    in_domain_epochs: float = 1.0
    """Then LM fine-tune on data/train.jsonl texts (labels unused) for this many epochs; 0 skips (ULMFiT step 2)."""
    in_domain_lr: float | None = None
    """Peak lr of the in-domain phase; null uses lr."""
    model: str = "llama-tiny"
    """A causal-LM preset (`trainforge models list`)."""
    config_overrides: dict[str, int | float | str | bool] = {}
    """Fields that override the preset's transformers config, e.g. {hidden_size: 256, intermediate_size: 688}."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Byte-level BPE trained on the corpus plus the in-domain text."""
    seq_len: int = 128
    """Tokens per packed training sequence (documents are concatenated, separated by </s>)."""
    dropout: float = 0.0
    """Dropout while pretraining; 0 is right when every token is seen about once."""
    val_share: float = 0.02
    """Share of packed sequences held out to measure LM loss."""
    epochs: float = 1.0
    """Passes over the general corpus."""
    weight_decay: float = 0.1
    """AdamW decay on matrices."""
    lr: float = 2.0e-3
    """Peak learning rate of the general phase."""
    moe: MoeConfig = MoeConfig()
    """Mixture-of-experts models: load balancing and health metrics."""
    mtp_depth: int = Field(0, ge=0)
    """DeepSeek-V3 multi-token prediction: D extra modules predict tokens t+2 … t+1+D (train/mtp.py), sharing the
    embedding and head; dropped at export. 0 is off."""
    mtp_lambda: float = Field(0.3, ge=0)
    """Weight λ of the mean MTP loss added to the next-token loss (DeepSeek-V3: 0.3, later 0.1)."""
