"""Post-training recipes beside the supervised loop: preference training (DPO family) and GRPO with verifiable
rewards, each in a loop file of its own that shares the schedule, checkpoint, distributed and memory helpers of
train/, plus R1-style distillation of a teacher's reasoning traces."""
