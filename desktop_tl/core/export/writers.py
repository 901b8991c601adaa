"""Writing a classifier as ONNX, a torch.export program or safetensors, and int8 ONNX.

Each writer takes the plain eval-mode classifier (no folded BatchNorm, float32, CPU) and
an example batch; the batch dimension is exported as dynamic. A failure inside an
exporter becomes :class:`UnsupportedExport`, naming the failing operator when it can be
found in the exporter's error, with the full traceback kept for the log.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import UserError

ONNX_OPSET = 18
#: Largest batch the exported programs accept; torch.export needs a finite bound to reason.
MAX_BATCH = 4096

#: How exporters name an operator in their errors, most specific first.
_OPERATOR_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"torch\.ops\.(\w+\.\w+)"),
    re.compile(r"\b(aten[.:]{1,2}\w+)"),
)


class UnsupportedExport(UserError):
    """An exporter could not translate the model; ``details`` holds the full traceback."""

    def __init__(self, message: str, operator: str | None, details: str) -> None:
        super().__init__(message)
        self.operator = operator
        self.details = details


def failing_operator(text: str) -> str | None:
    """The operator an exporter's error text (traceback included) names, if any."""
    for pattern in _OPERATOR_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).replace("::", ".")
    return None


def _unsupported(stage: str, exc: BaseException) -> UnsupportedExport:
    details = traceback.format_exc()
    operator = failing_operator(details)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    what = f"operator {operator}" if operator else f"{type(exc).__name__}: {first}"
    return UnsupportedExport(f"{stage} failed at {what}", operator, details)


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress lines; an export reports through its own callback."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def export_program(model: nn.Module, example: torch.Tensor):
    """``torch.export.export`` with a dynamic batch dimension."""
    try:
        with _quiet():
            return torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    except Exception as exc:  # any exporter failure is reported with its operator
        raise _unsupported("torch.export", exc) from None


def write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = export_program(model, example)
    torch.export.save(program, str(path))


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    """ONNX through the dynamo exporter; ``metadata`` goes into ``metadata_props``."""
    import onnx

    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: _batch_dim()},),
                opset_version=ONNX_OPSET,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise _unsupported("ONNX export", exc) from None
    program.save(str(path))
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = (
        "Image classifier exported by desktop_tl; see metadata_props for classes and preprocessing."
    )
    onnx.save(proto, str(path))


def write_safetensors(model: nn.Module, path: Path, config: dict[str, Any], config_path: Path) -> None:
    """Every weight of the classifier (backbone and head) plus its JSON description."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt", "desktop_tl": json.dumps(config)})
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def quantize_int8(source: Path, target: Path, method: str = "static", calibration: Any = None) -> str:
    """int8 quantisation through onnxruntime's tools; returns the method's description.

    ``static`` (the default): weights and activations int8 (QDQ, per-channel weights),
    activation ranges calibrated on ``calibration`` images; on CPU it runs faster than
    the float model. ``dynamic``: weights int8, activations quantised on the fly; needs no
    images but runs convolutional networks slower than float on CPU.
    """
    import logging
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    from . import INT8_METHODS

    if method not in INT8_METHODS:
        raise ValueError(f"unknown int8 method {method!r}; choose one of {', '.join(INT8_METHODS)}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the tools warn about pre-processing on the root logger
    try:
        if method == "dynamic":
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            return "onnxruntime.quantization.quantize_dynamic (QInt8 weights)"
        if calibration is None or len(calibration) == 0:
            raise ValueError("static int8 quantisation needs calibration images")
        input_name = _onnx_input_name(source)

        class _Batches(CalibrationDataReader):
            def __init__(self) -> None:
                self._batches = iter(
                    [{input_name: calibration[i : i + 8]} for i in range(0, len(calibration), 8)]
                )

            def get_next(self):
                return next(self._batches, None)

        with tempfile.TemporaryDirectory(dir=Path(target).parent) as tmp:
            prepared = Path(tmp) / "prepared.onnx"  # shapes inferred, graph optimised first
            quant_pre_process(str(source), str(prepared))
            quantize_static(
                str(prepared),
                str(target),
                _Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        root.setLevel(level)
    return (
        f"onnxruntime.quantization.quantize_static (QDQ, per-channel QInt8 weights, "
        f"QUInt8 activations calibrated on {len(calibration)} images)"
    )


def _onnx_input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers)
