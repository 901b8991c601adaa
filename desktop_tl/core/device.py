"""Choosing the device and the numeric precision of a run."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..errors import UserError


class DeviceError(UserError):
    """The chosen device is not available on this machine."""


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was chosen but no CUDA GPU is available here; use auto or cpu")
    if choice == "mps" and not mps_available():
        raise DeviceError("device 'mps' was chosen but Apple MPS is not available here; use auto or cpu")
    return torch.device(choice)


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), so autocast pays.

    Elsewhere bf16 on the CPU is emulated and slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        flags = ""
    # Without /proc/cpuinfo (macOS, Windows) we cannot tell; fp32 is the safe choice.
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(choice: str, device: torch.device) -> str:
    """``auto``: bf16 on CPUs with native bf16, bf16 or fp16 on CUDA, otherwise fp32."""
    if choice != "auto":
        if choice == "fp16" and device.type == "cpu":
            raise DeviceError("fp16 is not supported on the CPU; use bf16, fp32 or auto")
        if choice == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError("this GPU does not support bf16; use fp16, fp32 or auto")
        return choice
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for the precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=compute_dtype(precision))


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype autocast computes convolutions and matmuls in for ``precision``."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def feature_dtype(precision: str) -> torch.dtype:
    """The dtype cached features are kept in: bf16 where they were computed in bf16
    (storing them is then exact), fp16 otherwise (half the memory of fp32)."""
    return torch.bfloat16 if precision == "bf16" else torch.float16


@contextlib.contextmanager
def single_threaded():
    """Run torch ops on one intra-op thread inside the block.

    For per-image work in the training process (decoding, resizing, cropping one image
    at a time): such small ops gain nothing from a thread pool, and on a busy machine
    with few cores the pool's synchronisation makes them many times slower.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
