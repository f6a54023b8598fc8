"""Int8 quantisation of an exported encoder, from the user's own calibration sample.

- ONNX Runtime without calibration: dynamic quantisation (int8 weights per channel, activations
  quantised per batch at run time; MLAS uses the CPU's VNNI instructions where it has them).
- With calibration samples (ONNX Runtime or OpenVINO): static quantisation, scales fixed from the
  samples (``quantize_static`` for ONNX Runtime, NNCF for OpenVINO). The samples' digest is part of
  the export's key (``data.export``), so another sample is another export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.optional import optional_import


def calibration_digest(samples: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            digest.update(name.encode())
            digest.update(sample[name].tobytes())
    return digest.hexdigest()


class _Samples:
    """ONNX Runtime's calibration reader over a list of feeds, read one stride at a time."""

    def __init__(self, samples: Sequence[dict[str, Any]], names: Sequence[str]):
        self._feeds = [{n: s[n] for n in names} for s in samples]
        self._iter = iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._feeds[start_index:end_index])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._iter, None)


def quantize_onnx(source: Path, target: Path, calibration: Sequence[dict[str, Any]]) -> None:
    quantization = optional_import("onnxruntime.quantization")
    if not calibration:
        quantization.quantize_dynamic(
            str(source), str(target), weight_type=quantization.QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )  # fmt: skip
        return
    onnx = optional_import("onnx")
    graph = onnx.load(str(source)).graph
    names = [i.name for i in graph.input]
    # Only products with a weight matrix: attention's activation-by-activation products lose too much in int8.
    weights = {init.name for init in graph.initializer}
    activations_only = [n.name for n in graph.node if n.op_type == "MatMul" and not weights & set(n.input)]
    quantization.quantize_static(
        str(source), str(target), _Samples(calibration, names), quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8, per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=activations_only,
        # Ranges are folded in after every batch: holding every intermediate output of 1,000 texts took 10 GB.
        # (CalibMaxIntermediateOutputs would bound it too, but onnxruntime 1.32 drops the batches it folds.)
        extra_options={"CalibStridedMinMax": 1},
    )  # fmt: skip


def quantize_openvino(model: Any, calibration: Sequence[dict[str, Any]]) -> Any:
    nncf = optional_import("nncf")
    if not calibration:
        raise ValueError("backend=openvino with precision=int8 needs calibration samples (calibration=N)")
    names = [port.get_any_name() for port in model.inputs]
    return nncf.quantize(
        model, nncf.Dataset([{n: s[n] for n in names} for s in calibration]), model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
    )  # fmt: skip
