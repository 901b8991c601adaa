"""Does the exported model compute what the PyTorch model computes?

The same images go through both; we record the largest absolute logit difference and
the top-1 agreement. Why these limits:

* Top-1 agreement must be at least 99.5 %: on a validation set that is every image for
  up to 199 images, i.e. a user would not see a different label.
* The logit difference must stay within ``1e-3 * max(1, largest |logit|)``. Both models
  compute in float32 (about 7 significant digits); a different but correct kernel order
  over a hundred layers moves logits by around 1e-6 relative (measured: under 1e-6 for
  EfficientNet-Lite0). A mistranslated operator (wrong padding, a lost BatchNorm, a
  wrong epsilon) moves them by 1e-2 or more. 1e-3 separates the two with room to spare.
* predict.py decodes and resizes with Pillow, the engine with torchvision. Pillow and
  torchvision's antialiased resize round a few pixels differently (at most one 8-bit
  level), so its end-to-end check compares probabilities, within 0.02, and labels.
* int8 changes numbers by design; its check is the accuracy change on the labelled
  validation images, stated, and refused beyond a 5-point drop (without labels: top-1
  agreement with the float model below 95 %).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MIN_AGREEMENT = 0.995
LOGIT_RTOL = 1e-3
PROBABILITY_TOL = 0.02
INT8_MAX_ACCURACY_DROP = 0.05
INT8_MIN_AGREEMENT = 0.95


@dataclass
class ParityResult:
    name: str
    images: int
    max_abs_logit_diff: float | None  # None where only probabilities are compared
    top1_agreement: float
    tolerance: float | None
    passed: bool
    reference_accuracy: float | None = None
    candidate_accuracy: float | None = None
    max_abs_probability_diff: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure(self) -> str:
        """What failed, in one sentence (empty when it passed)."""
        if self.passed:
            return ""
        parts = []
        if self.name.startswith("int8"):
            if self.reference_accuracy is not None and self.candidate_accuracy is not None:
                parts.append(
                    f"accuracy fell from {self.reference_accuracy:.1%} to "
                    f"{self.candidate_accuracy:.1%}, more than {INT8_MAX_ACCURACY_DROP:.0%}"
                )
            else:
                parts.append(f"top-1 agreement {self.top1_agreement:.1%} is below {INT8_MIN_AGREEMENT:.0%}")
        elif self.top1_agreement < MIN_AGREEMENT:
            parts.append(f"top-1 agreement {self.top1_agreement:.1%} is below {MIN_AGREEMENT:.1%}")
        if (
            self.max_abs_logit_diff is not None
            and self.tolerance is not None
            and self.max_abs_logit_diff > self.tolerance
        ):
            parts.append(
                f"largest logit difference {self.max_abs_logit_diff:.3g} exceeds {self.tolerance:.3g}"
            )
        if self.max_abs_probability_diff is not None and self.max_abs_probability_diff > PROBABILITY_TOL:
            parts.append(
                f"largest probability difference {self.max_abs_probability_diff:.3g} exceeds "
                f"{PROBABILITY_TOL}"
            )
        return f"{self.name}: " + "; ".join(parts) + f" over {self.images} images"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or len(labels) == 0 or (labels < 0).any():
        return None
    return float((logits.argmax(axis=1) == labels).mean())


def compare_logits(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None = None,
    gate_on_logits: bool = True,
) -> ParityResult:
    """Parity of two ``(N, classes)`` logit arrays computed from the same inputs."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return ParityResult(
            name,
            len(reference),
            None,
            0.0,
            None,
            False,
            notes=[f"output shape {candidate.shape} differs from {reference.shape}"],
        )
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    agreement = (
        float((reference.argmax(axis=1) == candidate.argmax(axis=1)).mean()) if len(reference) else 1.0
    )
    tolerance = LOGIT_RTOL * max(1.0, float(np.abs(reference).max()) if reference.size else 1.0)
    passed = agreement >= MIN_AGREEMENT and (diff <= tolerance or not gate_on_logits)
    return ParityResult(
        name,
        len(reference),
        diff,
        agreement,
        tolerance,
        passed,
        reference_accuracy=_accuracy(reference, labels),
        candidate_accuracy=_accuracy(candidate, labels),
    )


def compare_int8(
    name: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> ParityResult:
    """int8 against float: judged on the accuracy change, not on logit closeness."""
    result = compare_logits(name, reference, candidate, labels, gate_on_logits=False)
    result.tolerance = None
    if result.reference_accuracy is not None and result.candidate_accuracy is not None:
        result.passed = result.reference_accuracy - result.candidate_accuracy <= INT8_MAX_ACCURACY_DROP + 1e-9
    else:
        result.passed = result.top1_agreement >= INT8_MIN_AGREEMENT
    return result


def compare_probabilities(
    name: str, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> ParityResult:
    """Parity of two ``(N, classes)`` probability arrays (end to end, from image files)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    agreement = (
        float((reference.argmax(axis=1) == candidate.argmax(axis=1)).mean()) if len(reference) else 1.0
    )
    passed = agreement >= MIN_AGREEMENT and diff <= PROBABILITY_TOL
    return ParityResult(
        name,
        len(reference),
        None,
        agreement,
        None,
        passed,
        reference_accuracy=_accuracy(reference, labels),
        candidate_accuracy=_accuracy(candidate, labels),
        max_abs_probability_diff=diff,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    return _softmax(np.asarray(logits, dtype=np.float64))
