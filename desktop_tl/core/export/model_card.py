"""The model card (README.md) of an export bundle: what the model is, what it was
trained on, how well it did, how faithfully it was exported, and fields for the people
who deploy it to fill in."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .parity import ParityResult

FILL_IN = "_(fill in)_"


def _class_counts(run_dir: Path, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    try:
        split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    counts = {}
    for subset in ("train", "val", "test"):
        items = split.get(subset) or []
        per_class = Counter(int(label) for _, label in items)
        if items:
            counts[subset] = {name: per_class.get(i, 0) for i, name in enumerate(classes)}
    return counts


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "n/a"


def write_model_card(
    path: Path,
    loaded,
    format: str,
    model_file: str,
    checks: list[ParityResult],
    model_sha256: str,
    int8_file: str | None,
    int8_method: str | None,
) -> None:
    from . import export_versions

    meta, summary, classes = loaded.meta, loaded.summary, loaded.classes
    weights = meta.get("weights") or {}
    head = meta.get("head") or {}
    pre = loaded.preprocessing
    metrics = meta.get("metrics") or {}
    out: list[str] = [f"# Image classifier: {', '.join(classes)}", ""]
    out += [
        f"Exported by desktop_tl from checkpoint `{loaded.checkpoint_name}` (epoch {meta.get('epoch', '?')}) "
        f"of the run `{loaded.run_dir.name}`, as `{model_file}` ({format}, sha256 `{model_sha256}`)."
    ]
    if int8_file:
        out += [f"An int8 version is `{int8_file}` ({int8_method})."]
    if format == "onnx":
        out += [
            "",
            "## Use",
            "",
            "```sh",
            "pip install onnxruntime numpy pillow",
            "python predict.py photo.jpg more_photos/ --top-k 3 [--json]",
            "```",
            "",
            "`predict.py` prepares images exactly as training did (see Preprocessing) and needs "
            "neither torch nor desktop_tl. The model's input is `images`, float32 "
            f"(batch, 3, {pre.crop}, {pre.crop}); its output `logits`, float32 (batch, {len(classes)}); "
            "classes, preprocessing and provenance are also in the ONNX `metadata_props`.",
        ]
    elif format == "pt2":
        out += [
            "",
            "## Use",
            "",
            "```python",
            "import torch",
            f"program = torch.export.load('{model_file}')",
            f"logits = program.module()(images)  # float32 (batch, 3, {pre.crop}, {pre.crop})",
            "```",
        ]
    else:
        out += [
            "",
            "## Use",
            "",
            f"`{model_file}` holds every weight of the classifier (backbone and head); `config.json` "
            "names the architecture, classes and preprocessing. Load it with "
            "`safetensors.torch.load_file` into a model of the same layout (desktop_tl's "
            "`TransferModel`: `backbone.*` stages, then `head.*`).",
        ]

    out += ["", "## Data", "", f"Classes ({len(classes)}), images per split:", ""]
    counts = _class_counts(loaded.run_dir, classes)
    if counts:
        subsets = list(counts)
        out.append(_table(["class", *subsets], [[c, *(counts[s][c] for s in subsets)] for c in classes]))
    else:
        out.append(", ".join(classes) + " (the run's split file is missing; counts unknown)")
    if summary.get("skipped_files"):
        out += ["", f"{len(summary['skipped_files'])} unreadable files were skipped during training."]

    out += [
        "",
        "## Training",
        "",
        f"- Backbone: `{loaded.backbone_id}`, feature size {meta.get('feature_dim', '?')}",
        f"- Head: `{head.get('id', '?')}` with options `{json.dumps(head.get('options', {}))}`",
        f"- Frozen set (module: trainable): `{json.dumps(meta.get('freeze_map', {}))}`",
        f"- Epochs completed: {summary.get('epochs_completed', '?')} of {summary.get('epochs_planned', '?')}, "
        f"status {summary.get('status', '?')}, device {summary.get('device', '?')}, "
        f"precision {summary.get('precision', '?')}",
    ]
    if summary.get("freeze_changes"):
        out.append(f"- Freeze changes during training: {len(summary['freeze_changes'])} (see the run's log)")
    if loaded.run_toml:
        out += [
            "",
            "<details><summary>Run configuration (run.toml)</summary>",
            "",
            "```toml",
            loaded.run_toml.strip(),
            "```",
            "",
            "</details>",
        ]

    out += [
        "",
        "## Metrics",
        "",
        f"Checkpoint `{loaded.checkpoint_name}`: validation accuracy {_pct(metrics.get('val_acc'))}, "
        f"validation loss {metrics.get('val_loss', 'n/a') if not isinstance(metrics.get('val_loss'), float) else round(metrics['val_loss'], 4)}, "
        f"training accuracy {_pct(metrics.get('train_acc'))}.",
    ]
    confusion = summary.get("confusion")
    if confusion and len(confusion) == len(classes):
        out += [
            "",
            "Confusion matrix of the final model on the validation images "
            "(rows: true class, columns: predicted):",
            "",
        ]
        out.append(_table(["true \\ predicted", *classes], [[c, *row] for c, row in zip(classes, confusion)]))
        precision, recall = summary.get("per_class_precision"), summary.get("per_class_recall")
        if precision and recall:
            out += [
                "",
                _table(
                    ["class", "precision", "recall"],
                    [[c, _pct(p), _pct(r)] for c, p, r in zip(classes, precision, recall)],
                ),
            ]

    out += [
        "",
        "## Export parity",
        "",
        "The same images went through the PyTorch model and the exported one. The export is "
        "refused when top-1 agreement is below 99.5 % or the largest logit difference exceeds "
        "1e-3 × max(1, largest |logit|) (float32 rounding stays near 1e-6; a mistranslated "
        "operator moves logits by 1e-2 or more). predict.py is checked end to end from the "
        "image files; Pillow's resize may round a pixel one 8-bit level differently from "
        "torchvision's, so probabilities must agree within 0.02.",
        "",
    ]
    rows = []
    for c in checks:
        rows.append(
            [
                c.name,
                c.images,
                f"{c.max_abs_logit_diff:.3g}" if c.max_abs_logit_diff is not None else "-",
                f"{c.max_abs_probability_diff:.3g}" if c.max_abs_probability_diff is not None else "-",
                _pct(c.top1_agreement),
                f"{_pct(c.reference_accuracy)} → {_pct(c.candidate_accuracy)}",
                "yes" if c.passed else "no",
            ]
        )
    out.append(
        _table(
            [
                "check",
                "images",
                "max abs logit diff",
                "max abs probability diff",
                "top-1 agreement",
                "accuracy (PyTorch → export)",
                "passed",
            ],
            rows,
        )
    )
    notes = [n for c in checks for n in c.notes]
    if notes:
        out += ["", *[f"- {n}" for n in notes]]

    out += [
        "",
        "## Weights provenance",
        "",
        f"- Initial backbone weights: {'pretrained' if weights.get('pretrained') else 'random initialisation (not pretrained)'}, "
        f"source `{weights.get('source', '?')}`",
        f"- File: `{weights.get('path') or '-'}`",
        f"- sha256: `{weights.get('sha256') or '-'}`",
        f"- Detail: {weights.get('detail') or '-'}",
    ]

    out += [
        "",
        "## Preprocessing",
        "",
        f"Resize the short side to {pre.resize} ({pre.interpolation}, antialiased), centre-crop "
        f"{pre.crop}×{pre.crop}, scale to [0, 1], subtract mean {list(pre.mean)} and divide by std "
        f"{list(pre.std)}, channels first (RGB). Images are first turned upright by their EXIF "
        "orientation, transparency composited on white, 16-bit images scaled to 8 bits. "
        "`preprocessing.json` holds the numbers.",
    ]

    trained_versions = meta.get("versions") or {}
    out += [
        "",
        "## Versions",
        "",
        "Trained with: " + ", ".join(f"{k} {v}" for k, v in trained_versions.items()),
        "",
        "Exported with: " + ", ".join(f"{k} {v}" for k, v in export_versions().items()),
    ]

    out += [
        "",
        "## Intended use and limits",
        "",
        "Fill these in before the model is used for decisions.",
        "",
        f"- Intended use: {FILL_IN}",
        f"- Intended users: {FILL_IN}",
        f"- Out of scope (images or questions it must not be used for): {FILL_IN}",
        f"- Known limits (imaging conditions, instruments, classes missing from the data): {FILL_IN}",
        f"- Evaluation beyond the validation split: {FILL_IN}",
        f"- Owner and contact: {FILL_IN}",
        "",
    ]
    path.write_text("\n".join(out), encoding="utf-8")
