"""Serving on a device: a missing GPU is a UserError naming the key at startup; dtype and the sampler's generator."""

from __future__ import annotations

import pytest
import torch

from trainforge.cli import main
from trainforge.errors import UserError
from trainforge.serve.config import ServeConfig

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@no_cuda
def test_serve_device_cuda_without_a_gpu_exits_2_naming_the_flag(classifier_dir, capsys):
    assert main(["serve", str(classifier_dir), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device: cuda" in err and "no usable CUDA device" in err


@no_cuda
def test_serve_device_from_the_config_names_its_key(classifier_dir, tmp_path, capsys):
    (tmp_path / "serve.yaml").write_text("name: s\nserve:\n  device: cuda:1\n", encoding="utf-8")
    assert main(["serve", str(classifier_dir), "--config", str(tmp_path / "serve.yaml")]) == 2
    assert "serve.device: cuda:1" in capsys.readouterr().err
    (tmp_path / "top.yaml").write_text("name: s\ndevice: cuda\n", encoding="utf-8")
    assert main(["serve", str(classifier_dir), "--config", str(tmp_path / "top.yaml")]) == 2
    assert "device: cuda" in capsys.readouterr().err


@no_cuda
def test_server_state_refuses_a_missing_gpu_before_loading(classifier_dir):
    from trainforge.serve.server import ModelSource, ServerState

    with pytest.raises(UserError, match="serve.device: cuda"):
        ServerState(ServeConfig(device="cuda"), ModelSource.parse(str(classifier_dir)))


def test_serve_dtype_is_checked_by_the_config():
    with pytest.raises(Exception, match="dtype"):
        ServeConfig(dtype="int4")


def test_cpu_serving_is_fp32_and_explicit_bf16_is_honoured(classifier_dir):
    from trainforge.serve.engine import load_engine, serving_dtype

    cpu = torch.device("cpu")
    assert serving_dtype("auto", cpu) == torch.float32
    plain = load_engine(classifier_dir)  # what the register stage calls: CPU, fp32
    same = load_engine(classifier_dir, cpu, serving_dtype("auto", cpu))
    texts = ["很好，推荐", "太差了，退货"]
    assert plain.classify(texts) == same.classify(texts)  # the CPU path computes exactly what it did
    half = load_engine(classifier_dir, cpu, serving_dtype("bf16", cpu))
    assert next(half.model.parameters()).dtype == torch.bfloat16
    for probs in half.classify(texts):
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-2)


def test_the_sampler_generator_is_seeded_on_the_model_device_as_before(llama_dir):
    from trainforge.serve.batching import GenRequest, _Row, generate_batch
    from trainforge.serve.engine import load_engine

    engine = load_engine(llama_dir)
    row = _Row(GenRequest([1], 4, seed=11), engine, engine.device)
    assert row.generator.device == engine.device
    assert torch.equal(torch.rand(5, generator=row.generator), torch.rand(5, generator=torch.Generator().manual_seed(11)))

    def tokens(seed):
        got = []
        generate_batch(engine, [GenRequest(engine.encode("你好"), 6, 1.0, 0.9, seed=seed, emit=got.append)])
        return [e for e in got if e[0] == "token"], got[-1]

    assert tokens(3) == tokens(3)


@pytest.mark.gpu
def test_serving_on_a_gpu_runs_bf16_there(classifier_dir, llama_dir):
    from trainforge.serve.batching import GenRequest, generate_batch
    from trainforge.serve.engine import load_engine, serving_dtype

    gpu = torch.device("cuda", 0)
    dtype = serving_dtype("auto", gpu)
    clf = load_engine(classifier_dir, gpu, dtype)
    assert clf.device == gpu and next(clf.model.parameters()).dtype == dtype
    cpu_probs = load_engine(classifier_dir).classify(["很好，推荐", "太差了，退货"])
    for got, want in zip(clf.classify(["很好，推荐", "太差了，退货"]), cpu_probs):
        assert max(got, key=got.get) == max(want, key=want.get) or abs(max(want.values()) - 0.5) < 0.05
    gen = load_engine(llama_dir, gpu, dtype)
    got = []
    generate_batch(gen, [GenRequest(gen.encode("你好"), 5, 1.0, 0.9, seed=1, emit=got.append),
                         GenRequest(gen.encode("今天"), 3, 0.0, emit=got.append)])
    assert [e[0] for e in got].count("done") == 2


@pytest.mark.gpu
def test_server_state_loads_onto_the_gpu(classifier_dir):
    from trainforge.serve.server import ModelSource, ServerState

    state = ServerState(ServeConfig(device="cuda"), ModelSource.parse(str(classifier_dir)))
    served = state.load_version(classifier_dir, "v", "model")
    try:
        assert served.engine.device.type == "cuda"
    finally:
        served.batcher.close()
