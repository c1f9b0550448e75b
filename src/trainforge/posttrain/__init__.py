"""Post-training beyond SFT: recipes beside the supervised loop (train/loop.py), each in a file of its own.

    preference.py  records → (prompt, chosen, rejected) pairs: given, from labels, or from a judge over samples
    dpo.py         sequence log-probs (left padding, attention mask, position ids) and the DPO-family losses
    dpo_loop.py    the DPO recipe: reference log-probs once, then only the policy in memory; resumable
    grpo*.py       GRPO with verifiable rewards (rewards.py, rollouts.py); distill*.py: R1-style trace distillation

They share the schedule, optimizer groups, checkpoints, distributed and memory helpers of train/.
"""
