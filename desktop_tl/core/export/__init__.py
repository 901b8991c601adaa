"""Take a trained model out of desktop_tl: ONNX, torch.export ``.pt2`` or safetensors.

:func:`export` is the one entry, used by the CLI and the window. It reads a run folder
(never writes to it), rebuilds the plain eval-mode classifier from the chosen checkpoint,
writes the model file and a bundle around it (labels, preprocessing, a model card, a
parity report and, for ONNX, a ``predict.py`` that needs only onnxruntime, numpy and
Pillow), checks parity on the validation images and only then moves the bundle into
place. A bundle that fails its check is deleted: nothing half-written is left behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...errors import UserError
from .parity import ParityResult

FORMATS = ("onnx", "pt2", "safetensors")
CHECKPOINTS = ("best", "last")
BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "desktop_tl.export/1"
MODEL_FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "safetensors": "model.safetensors"}
INT8_FILE = "model.int8.onnx"
#: How --int8 quantises: static (calibrated, faster than float on CPU) or dynamic.
INT8_METHODS = ("static", "dynamic")
#: Images whose activations set the ranges of a static int8 model.
CALIBRATION_IMAGES = 64
DEFAULT_PARITY_IMAGES = 64


class ExportError(UserError):
    """An export cannot be made as asked; nothing was written."""


@dataclass
class ExportResult:
    out: Path
    format: str
    checkpoint: str
    model_file: Path
    parity: list[ParityResult] = field(default_factory=list)
    int8_file: Path | None = None

    def summary(self) -> str:
        lines = [f"exported {self.format} to {self.out} (checkpoint {self.checkpoint})"]
        for check in self.parity:
            parts = [f"top-1 agreement {check.top1_agreement:.1%}"]
            if check.max_abs_logit_diff is not None:
                parts.append(f"max |logit diff| {check.max_abs_logit_diff:.2g}")
            if check.max_abs_probability_diff is not None:
                parts.append(f"max |probability diff| {check.max_abs_probability_diff:.2g}")
            if (
                check.reference_accuracy is not None
                and check.candidate_accuracy is not None
                and check.name.startswith("int8")
            ):
                parts.append(f"accuracy {check.reference_accuracy:.1%} -> {check.candidate_accuracy:.1%}")
            lines.append(f"  parity {check.name} on {check.images} images: " + ", ".join(parts))
        return "\n".join(lines)


Progress = Callable[[str], None]


def default_out(run_dir: Path, format: str, int8: bool = False) -> Path:
    """Beside the run folder, never inside it: ``<run>-<format>[-int8]``."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent / f"{run_dir.name}-{format}{'-int8' if int8 else ''}"


def export(
    run_dir: str | Path,
    format: str,
    checkpoint: str = "best",
    out: str | Path | None = None,
    int8: bool = False,
    int8_method: str = "static",
    force: bool = False,
    max_parity_images: int = DEFAULT_PARITY_IMAGES,
    progress: Progress | None = None,
    host: Any = None,
) -> ExportResult:
    """Export ``checkpoint`` of ``run_dir`` as ``format`` into the bundle folder ``out``.

    Raises :class:`ExportError` (a :class:`UserError`) for every bad input and for a
    failed parity check; in each case the destination is left as it was.
    """
    from .loading import calibration_samples, checkpoint_folder, load_run_model, validation_samples

    say = progress or (lambda message: None)
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if checkpoint not in CHECKPOINTS:
        raise ExportError(f"unknown checkpoint {checkpoint!r}; choose best or last")
    if int8 and format != "onnx":
        raise ExportError("--int8 quantises the ONNX model; use it with --format onnx")
    if int8_method not in INT8_METHODS:
        raise ExportError(f"unknown int8 method {int8_method!r}; choose one of {', '.join(INT8_METHODS)}")
    run_dir = Path(run_dir)
    checkpoint_folder(run_dir, checkpoint)  # refuse a folder that is not a run before anything else
    out = Path(out) if out is not None else default_out(run_dir, format, int8)
    _check_destination(run_dir, out, force)

    # The staging folder comes first: a read-only destination is refused before any work.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"cannot write into {out.parent}: {exc.strerror or exc}") from None
    try:
        say(f"loading checkpoint {checkpoint} of {run_dir}")
        loaded = load_run_model(run_dir, checkpoint, host=host)
        samples = validation_samples(run_dir, loaded, max_parity_images)
        calibration = None
        if int8 and int8_method == "static":
            calibration = calibration_samples(run_dir, loaded, CALIBRATION_IMAGES)
            if calibration is None:
                raise ExportError(
                    f"static int8 quantisation calibrates on the run's images, and they are no "
                    f"longer where the run found them (see {run_dir / 'split.json'}); put the "
                    "data folder back, or use --int8-method dynamic, which needs no images"
                )
        result = _build_bundle(staging, loaded, samples, format, int8, say, int8_method, calibration)
        say("moving the bundle into place")
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = out
    result.model_file = out / result.model_file.name
    if result.int8_file is not None:
        result.int8_file = out / result.int8_file.name
    return result


# --------------------------------------------------------------------------- destination


def _bundle_files(folder: Path) -> set[str] | None:
    """The files an earlier export wrote into ``folder``, or None when it is no bundle."""
    try:
        data = json.loads((Path(folder) / BUNDLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        return None
    return {str(name) for name in data.get("files", [])}


def _check_destination(run_dir: Path, out: Path, force: bool) -> None:
    run = run_dir.resolve()
    target = out.resolve()
    if target == run or run in target.parents:
        raise ExportError(
            f"{out} is inside the run folder {run_dir}; an export never changes "
            "the run folder, choose an output folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        written = _bundle_files(out)
        if written is None:
            raise ExportError(
                f"{out} already exists and holds files that are not an export "
                "bundle; choose another output folder (nothing there is deleted)"
            )
        added = sorted(p.name for p in out.iterdir() if p.name not in written)
        if added:  # --force replaces what an export wrote, never a file someone put there
            raise ExportError(
                f"{out} holds an export bundle plus other files ({', '.join(added[:3])}); "
                "move them or choose another output folder"
            )
        if not force:
            raise ExportError(
                f"{out} already holds an export bundle; use --force to replace it "
                "or choose another output folder"
            )


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the finished bundle in; a replaced bundle is removed only once the new one is in."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.replaced-{int(time.time() * 1000)}")
            out.rename(old)
        else:
            out.rmdir()
    try:
        staging.rename(out)
    except OSError as exc:
        if old is not None:
            old.rename(out)
        raise ExportError(f"cannot create {out}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- the bundle


def _build_bundle(
    folder: Path,
    loaded,
    samples,
    format: str,
    int8: bool,
    say: Progress,
    int8_method: str = "static",
    calibration=None,
) -> ExportResult:
    import hashlib

    import numpy as np
    import torch

    from . import writers
    from .loading import reference_outputs
    from .model_card import write_model_card
    from .parity import (
        INT8_MAX_ACCURACY_DROP,
        LOGIT_RTOL,
        MIN_AGREEMENT,
        PROBABILITY_TOL,
        compare_int8,
        compare_logits,
    )

    model = loaded.model
    inputs, labels = samples.inputs, samples.labels
    reference = reference_outputs(model, inputs)
    example = inputs[:2] if len(inputs) >= 2 else torch.cat([inputs, inputs])[:2]
    model_file = folder / MODEL_FILES[format]
    checks: list[ParityResult] = []
    extra: dict[str, Any] = {}

    say(f"exporting {loaded.backbone_id} as {format}")
    try:
        if format == "onnx":
            writers.write_onnx(model, example, model_file, onnx_metadata(loaded))
            candidate = _run_onnx(model_file, inputs)
        elif format == "pt2":
            writers.write_pt2(model, example, model_file)
            program = torch.export.load(str(model_file))
            with torch.inference_mode():
                candidate = np.concatenate(
                    [program.module()(inputs[i : i + 32]).numpy() for i in range(0, len(inputs), 32)]
                )
        else:
            config = safetensors_config(loaded)
            writers.write_safetensors(model, model_file, config, folder / "config.json")
            from .loading import rebuild_model
            from safetensors.torch import load_file

            rebuilt = rebuild_model(loaded.host, loaded.meta, load_file(str(model_file)), str(model_file))
            candidate = reference_outputs(rebuilt, inputs)
    except writers.UnsupportedExport as exc:
        raise _explain_unsupported(exc, format, model, example, loaded) from None

    say("checking parity")
    checks.append(compare_logits(f"{format} vs PyTorch", reference, candidate, labels))
    if samples.source != "validation images":
        checks[-1].notes.append(f"inputs: {samples.source}")

    if format == "onnx":
        (folder / "predict.py").write_bytes(Path(__file__).with_name("bundle_predict.py").read_bytes())
    _write_json(folder / "labels.json", list(loaded.classes))
    _write_json(folder / "preprocessing.json", loaded.preprocessing.to_dict())
    if format == "onnx" and samples.paths:
        checks.append(_predict_script_parity(folder, loaded, samples))

    int8_file = None
    if int8:
        say(f"quantising to int8 ({int8_method})")
        int8_file = folder / INT8_FILE
        extra["int8_method"] = writers.quantize_int8(
            model_file,
            int8_file,
            int8_method,
            calibration.inputs.numpy() if calibration is not None else None,
        )
        quantised = _run_onnx(int8_file, inputs)
        checks.append(compare_int8("int8 ONNX vs PyTorch", reference, quantised, labels))

    failed = [c for c in checks if not c.passed]
    if failed:
        raise ExportError(
            "the exported model does not match the PyTorch model, so nothing was "
            "kept: " + " | ".join(c.failure() for c in failed)
        )

    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    parity = {
        "checks": [c.to_dict() for c in checks],
        "inputs": samples.source,
        "limits": {
            "min_top1_agreement": MIN_AGREEMENT,
            "logit_rtol": LOGIT_RTOL,
            "probability_tol": PROBABILITY_TOL,
            "int8_max_accuracy_drop": INT8_MAX_ACCURACY_DROP,
        },
    }
    _write_json(folder / "parity.json", parity)
    write_model_card(
        folder / "README.md",
        loaded,
        format,
        model_file.name,
        checks,
        digest,
        int8_file.name if int8_file else None,
        extra.get("int8_method"),
    )
    _write_json(
        folder / BUNDLE_FILE,
        {
            "format": BUNDLE_FORMAT,
            "model_format": format,
            "model_file": model_file.name,
            "model_sha256": digest,
            "int8_file": int8_file.name if int8_file else None,
            "run_dir": str(loaded.run_dir.resolve()),
            "checkpoint": loaded.checkpoint_name,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": export_versions(),
            "files": sorted([p.name for p in folder.iterdir()] + [BUNDLE_FILE]),
        },
    )
    return ExportResult(folder, format, loaded.checkpoint_name, model_file, checks, int8_file)


def _run_onnx(path: Path, inputs) -> "Any":
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    array = inputs.numpy()
    return np.concatenate([session.run(None, {name: array[i : i + 32]})[0] for i in range(0, len(array), 32)])


def _predict_script_parity(folder: Path, loaded, samples) -> ParityResult:
    """predict.py end to end (its own decoding and resizing) against the engine's
    probabilities on the same image files."""
    import importlib.util

    import numpy as np

    from .parity import compare_probabilities

    spec = importlib.util.spec_from_file_location("desktop_tl_bundle_predict", folder / "predict.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    classifier = script.Classifier(folder)
    arrays = [script.load(p, classifier.preprocessing) for p in samples.paths]
    candidate = np.concatenate(
        [classifier.probabilities(np.stack(arrays[i : i + 32])) for i in range(0, len(arrays), 32)]
    )
    from .parity import softmax
    from .loading import reference_outputs

    reference = softmax(reference_outputs(loaded.model, samples.inputs))
    return compare_probabilities("predict.py vs desktop-tl predict", reference, candidate, samples.labels)


def _explain_unsupported(exc, format: str, model, example, loaded) -> ExportError:
    """One line naming the operator and the formats that do work; the traceback goes to a log."""
    from . import writers

    working = ["safetensors"]
    if format == "onnx":
        try:
            writers.export_program(model, example)
            working.insert(0, "pt2")
        except writers.UnsupportedExport:
            pass
    log = _write_failure_log(exc.details)
    return ExportError(
        f"{loaded.backbone_id} cannot be exported as {format}: {exc}; formats that "
        f"work for it: {', '.join(working)} (exporter details in {log})"
    )


def _write_failure_log(details: str) -> Path:
    from ..run_folder import cache_dir

    folder = cache_dir() / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"export-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.log"
        path.write_text(details, encoding="utf-8")
        return path
    except OSError:
        import logging

        logging.getLogger(__name__).error("export failed:\n%s", details)
        return Path("the application log")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


# --------------------------------------------------------------------------- metadata


def export_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from ..checkpoints import versions

    return {**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def onnx_metadata(loaded) -> dict[str, str]:
    from ... import __version__

    weights = loaded.meta.get("weights") or {}
    return {
        "classes": json.dumps(list(loaded.classes)),
        "preprocessing": json.dumps(loaded.preprocessing.to_dict()),
        "backbone": loaded.backbone_id,
        "head": json.dumps(loaded.meta.get("head", {})),
        "weights_source": str(weights.get("source", "")),
        "weights_pretrained": str(bool(weights.get("pretrained", False))).lower(),
        "weights_sha256": str(weights.get("sha256") or ""),
        "checkpoint": loaded.checkpoint_name,
        "checkpoint_epoch": str(loaded.meta.get("epoch", "")),
        "desktop_tl_version": __version__,
        "input": "images: float32 (batch, 3, crop, crop), RGB, scaled to [0,1], normalised by mean/std",
        "output": "logits: float32 (batch, classes); softmax gives probabilities",
    }


def safetensors_config(loaded) -> dict[str, Any]:
    meta = loaded.meta
    return {
        "format": "desktop_tl.classifier/1",
        "architecture": "TransferModel: logits = head(backbone(images)); backbone.* is an "
        "nn.Sequential of the backbone's named stages, head.* the classifier head",
        "classes": list(loaded.classes),
        "backbone": loaded.backbone_id,
        "head": meta.get("head", {}),
        "feature_dim": meta.get("feature_dim"),
        "preprocessing": loaded.preprocessing.to_dict(),
        "weights": meta.get("weights", {}),
        "checkpoint": loaded.checkpoint_name,
        "epoch": meta.get("epoch"),
        "versions": meta.get("versions", {}),
    }
