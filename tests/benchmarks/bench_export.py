"""Images per second of the exported ONNX model (fp32, static and dynamic int8) under
onnxruntime against the PyTorch model in eager mode: same images, same machine, one run.

    .venv/bin/python tests/benchmarks/bench_export.py [--rounds 3] [--batch-size 16] [--threads N]

Trains EfficientNet-Lite0 (real ImageNet weights) head-only for 3 epochs on the bundled
sample dataset, exports it with ``--int8`` (static) and quantises it dynamically too, then times each model over the validation
images, already preprocessed (the models are compared, not the image decoding). Rounds
alternate between the four so that other load on a shared machine hits them alike;
the medians of the per-round ratios are printed, with the int8 accuracy change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="0: the libraries' defaults")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from desktop_tl.core.export import export
    from desktop_tl.core.export.loading import load_run_model, validation_samples
    from desktop_tl.core.training import Trainer
    from desktop_tl.resources import sample_dataset_dir
    from helpers_training import lite0_config

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        finished = Trainer(lite0_config(sample_dataset_dir(), root / "run", epochs=3, device="cpu")).run()
        if finished.status != "completed":
            print(f"training did not complete: {finished.reason}")
            return 1
        result = export(root / "run", "onnx", out=root / "bundle", int8=True, max_parity_images=10_000)
        loaded = load_run_model(root / "run", "best")
        samples = validation_samples(root / "run", loaded, 10_000)
        inputs = samples.inputs
        array = inputs.numpy()
        options = onnxruntime.SessionOptions()
        if args.threads:
            options.intra_op_num_threads = args.threads
        from desktop_tl.core.export import writers

        dynamic = root / "model.int8-dynamic.onnx"
        writers.quantize_int8(result.out / "model.onnx", dynamic, "dynamic")
        sessions = {
            name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (
                ("onnx fp32", result.out / "model.onnx"),
                ("int8 static", result.out / "model.int8.onnx"),
                ("int8 dynamic", dynamic),
            )
        }
        batch = args.batch_size

        def eager():
            with torch.inference_mode():
                for i in range(0, len(inputs), batch):
                    loaded.model(inputs[i : i + batch])

        def ort(session):
            def go():
                for i in range(0, len(array), batch):
                    session.run(None, {"images": array[i : i + batch]})

            return go

        runners = {"pytorch eager": eager, **{name: ort(s) for name, s in sessions.items()}}
        for go in runners.values():  # warm-up: first-call allocations and kernel selection
            go()
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, go in runners.items():
                start = time.perf_counter()
                go()
                rates[name].append(len(inputs) / (time.perf_counter() - start))

    print(
        f"{len(inputs)} validation images, batch {batch}, {args.rounds} rounds, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, values in rates.items():
        print(f"  {name:14s} {statistics.median(values):8.1f} images/s (median)")
    for name in sessions:
        ratios = [o / e for o, e in zip(rates[name], rates["pytorch eager"])]
        print(
            f"  {name} / pytorch eager: {statistics.median(ratios):.2f}x (per round: "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + ")"
        )
    int8 = next(c for c in result.parity if c.name.startswith("int8"))
    print(
        f"  static int8 accuracy on the validation images: {int8.reference_accuracy:.1%} (fp32) -> "
        f"{int8.candidate_accuracy:.1%} (int8), change {int8.candidate_accuracy - int8.reference_accuracy:+.1%}; "
        f"top-1 agreement {int8.top1_agreement:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
