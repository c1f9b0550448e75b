"""ONNX: the exported graph, run by onnxruntime, gives PyTorch's logits at other batch sizes and lengths."""

from __future__ import annotations

import pytest

from tests.compress.conftest import batch_of, tiny_bert, token_data

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from trainforge.compress.onnx_export import export_onnx

    model, out = tiny_bert(), tmp_path_factory.mktemp("onnx")
    return model, export_onnx(model, batch_of(token_data(8), 4), out / "model.onnx")


def test_onnx_parity_with_dynamic_batch_and_length(exported, tmp_path):
    from trainforge.compress.onnx_export import onnx_parity, write_parity
    from trainforge.train.loop import collate

    model, path = exported
    assert path.is_file() and not list(path.parent.glob("*.data"))  # one self-contained file
    data = token_data(40, seed=5)
    others = [collate(data, list(range(i, i + n)), 0) for i, n in ((4, 1), (5, 7), (12, 16))]
    assert len({b["input_ids"].shape for b in others}) == 3
    result = write_parity(onnx_parity(model, path, others), 1e-4, tmp_path / "parity.json")
    assert result["passed"] and result["max_abs_diff"] < 1e-4
    assert result["argmax_agreement"] == 1.0 and result["examples"] == 24


def test_parity_check_catches_a_different_model(exported):
    from trainforge.compress.onnx_export import onnx_parity

    _, path = exported
    assert onnx_parity(tiny_bert(seed=9), path, [batch_of(token_data(8), 8)])["max_abs_diff"] > 1e-3


def test_exporter_torchvision_lines_are_quieted_at_their_source():
    """torch's exporter logs four "torchvision is not installed" lines per export while it builds its operator
    registry; they say nothing about a text model. export_onnx builds it under _quiet_logger(_REGISTRY_LOGGER)."""
    import logging

    from torch.onnx._internal.exporter import _registration

    from trainforge.compress.onnx_export import _REGISTRY_LOGGER, _quiet_logger

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log = logging.getLogger(_REGISTRY_LOGGER)
    handler = Keep()
    log.addHandler(handler)
    try:
        _registration.ONNXRegistry.from_torchlib()
        loud = [m for m in seen if "torchvision" in m]
        seen.clear()
        with _quiet_logger(_REGISTRY_LOGGER):
            _registration.ONNXRegistry.from_torchlib()
    finally:
        log.removeHandler(handler)
    if not loud:
        pytest.skip("this torch logs nothing about torchvision (installed, or a newer exporter)")
    assert not [m for m in seen if "torchvision" in m]
