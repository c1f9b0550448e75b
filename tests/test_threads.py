"""torch's thread count is set for a piece of work and always given back: by each stage and by the runner."""

from __future__ import annotations

import pytest
import torch

from trainforge.config import load_config
from trainforge.threads import torch_threads


def test_torch_threads_restores_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):  # None: leave the count alone, but still restore what the block changes
        torch.set_num_threads(1)
    assert torch.get_num_threads() == before


def test_every_stage_starts_with_the_threads_the_run_started_with(tiny_config, monkeypatch):
    from trainforge import stages
    from trainforge.run import run_pipeline

    torch.set_num_threads(2)
    seen: dict[str, int] = {}
    real = stages.load

    def recording(entry):
        fn = real(entry)

        def stage(ctx):
            seen[ctx.stage] = torch.get_num_threads()
            out = fn(ctx)
            torch.set_num_threads(1)  # a stage that forgets to restore must not leak into the next one
            return out

        return stage

    monkeypatch.setattr(stages, "load", recording)
    cfg = load_config(tiny_config)  # train.threads: 1, and eval lowers threads for small models
    run_pipeline(cfg)
    assert seen == {"data": 2, "train": 2, "eval": 2}
    assert torch.get_num_threads() == 2


def test_train_and_eval_stages_restore_their_own_thread_settings(tiny_config):
    from trainforge.run import StageContext, run_pipeline
    from trainforge.train.stage import run_train

    torch.set_num_threads(2)
    cfg = load_config(tiny_config)
    run_pipeline(cfg, only=("data",))
    run_train(StageContext(cfg, cfg.run_dir, "train"))  # train.threads: 1 inside, given back after
    assert torch.get_num_threads() == 2
