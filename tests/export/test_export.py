"""Exporting a trained run (ONNX, torch.export, safetensors), loading it back without
desktop_tl (and, for ONNX, without torch), parity, and every bad input."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop_tl.cli import main
from desktop_tl.core.export import export
from desktop_tl.core.export.parity import PROBABILITY_TOL, compare_logits
from desktop_tl.core.training import Trainer

from helpers_disks import read_only
from helpers_training import lite0_config, sample_subset

CLASSES = ("brick", "grass", "gravel")

#: Run before a script in a fresh interpreter: importing any of these fails there.
BLOCKER = """
import sys
BLOCKED = set(sys.argv.pop(1).split(','))
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is not installed here')
        return None
sys.meta_path.insert(0, _Blocker())
for name in list(sys.modules):
    if name.split('.')[0] in BLOCKED:
        del sys.modules[name]
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f'{name} still importable')
script = sys.argv.pop(1)
sys.argv[0] = script
import runpy
runpy.run_path(script, run_name='__main__')
"""


def run_blocked(blocked: str, script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``script`` in an isolated interpreter (-I: no PYTHONPATH, no user site, no cwd on
    sys.path) in which the ``blocked`` packages cannot be imported."""
    return subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER, blocked, str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    photos = sample_subset(root / "photos", classes=CLASSES, n_train=8, n_val=4)
    run = root / "run"
    finished = Trainer(lite0_config(photos, run, epochs=2, device="cpu")).run()
    assert finished.status == "completed", finished.reason
    return {"root": root, "photos": photos, "run": run, "before": snapshot(run)}


@pytest.fixture(scope="module")
def onnx_bundle(trained):
    return export(trained["run"], "onnx", out=trained["root"] / "onnx", int8=True)


@pytest.fixture(scope="module")
def pt2_bundle(trained):
    return export(trained["run"], "pt2", out=trained["root"] / "pt2")


@pytest.fixture(scope="module")
def safetensors_bundle(trained):
    return export(trained["run"], "safetensors", out=trained["root"] / "safetensors")


def odd_images(photos: Path, folder: Path) -> list[Path]:
    """The pixel formats and orientations the engine normalises, made from real photos."""
    folder.mkdir(parents=True, exist_ok=True)
    brick = Image.open(next((photos / "val" / "brick").iterdir())).convert("RGB")
    grass = Image.open(next((photos / "val" / "grass").iterdir())).convert("RGB")
    gravel = Image.open(next((photos / "val" / "gravel").iterdir())).convert("RGB")
    made = []
    wide = brick.resize((400, 260), Image.BICUBIC)  # downscaled and cropped, not square
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the engine rotates it upright
    wide.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=95)
    made.append(folder / "rotated.jpg")
    rgba = grass.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(grass.size))
    rgba.save(folder / "transparent.png")
    made.append(folder / "transparent.png")
    sixteen = (np.asarray(gravel.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "sixteen_bit.png")
    made.append(folder / "sixteen_bit.png")
    gravel.convert("P").save(folder / "palette.gif")
    made.append(folder / "palette.gif")
    return made


# --------------------------------------------------------------------------- ONNX


def test_onnx_bundle_holds_model_labels_preprocessing_card_and_parity(trained, onnx_bundle):
    import onnx
    import onnxruntime

    out = onnx_bundle.out
    names = {p.name for p in out.iterdir()}
    assert {
        "model.onnx",
        "model.int8.onnx",
        "labels.json",
        "preprocessing.json",
        "README.md",
        "parity.json",
        "predict.py",
        "bundle.json",
    } <= names
    assert not any(name.startswith(".") for name in os.listdir(out.parent))  # no staging left

    meta = json.loads((trained["run"] / "checkpoints" / "best" / "meta.json").read_text())
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES)
    assert json.loads(props["preprocessing"]) == meta["preprocessing"]
    assert props["backbone"] == "efficientnet_lite:efficientnet_lite0"
    assert props["weights_sha256"] == meta["weights"]["sha256"] and len(props["weights_sha256"]) == 64
    assert props["desktop_tl_version"] == meta["versions"]["desktop_tl"]
    assert json.loads((out / "labels.json").read_text()) == list(CLASSES)

    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    for batch in (1, 5):  # the batch dimension is dynamic
        logits = session.run(None, {"images": np.zeros((batch, 3, 224, 224), np.float32)})[0]
        assert logits.shape == (batch, len(CLASSES))

    parity = json.loads((out / "parity.json").read_text())
    checks = {c["name"]: c for c in parity["checks"]}
    assert parity["inputs"] == "validation images"
    onnx_check = checks["onnx vs PyTorch"]
    assert onnx_check["images"] == 12 and onnx_check["passed"]
    assert onnx_check["top1_agreement"] == 1.0
    assert onnx_check["max_abs_logit_diff"] <= onnx_check["tolerance"] <= 0.01
    script_check = checks["predict.py vs desktop-tl predict"]
    assert script_check["passed"] and script_check["max_abs_probability_diff"] <= PROBABILITY_TOL

    card = (out / "README.md").read_text()
    for words in (
        "Confusion matrix",
        "| brick | 8 | 4 |",
        "Intended use: _(fill in)_",
        "Export parity",
        meta["weights"]["sha256"],
        '"backbone": false',
        f"{onnx_check['max_abs_logit_diff']:.3g}",
    ):
        assert words in card, words


def test_int8_model_states_its_accuracy_change(onnx_bundle):
    import onnxruntime

    check = next(c for c in onnx_bundle.parity if c.name.startswith("int8"))
    assert check.passed and check.reference_accuracy is not None
    assert check.reference_accuracy - check.candidate_accuracy <= 0.05
    assert (onnx_bundle.out / "model.int8.onnx").stat().st_size < (
        onnx_bundle.out / "model.onnx"
    ).stat().st_size / 2
    session = onnxruntime.InferenceSession(str(onnx_bundle.out / "model.int8.onnx"))
    assert session.run(None, {"images": np.zeros((2, 3, 224, 224), np.float32)})[0].shape == (2, 3)
    assert "accuracy" in onnx_bundle.summary() and "int8" in (onnx_bundle.out / "README.md").read_text()


def test_int8_is_static_by_default_calibrated_on_training_images(onnx_bundle):
    import onnx

    bundle = json.loads((onnx_bundle.out / "bundle.json").read_text())
    card = (onnx_bundle.out / "README.md").read_text()
    assert "quantize_static" in card and "calibrated on" in card
    graph = onnx.load(str(onnx_bundle.out / bundle["int8_file"])).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # activations int8 too, not only weights
    # the accuracy change is measured on validation images, which calibration did not see
    parity = json.loads((onnx_bundle.out / "parity.json").read_text())
    assert parity["inputs"] == "validation images"


def test_dynamic_int8_quantises_weights_only(onnx_bundle, tmp_path):
    import onnx

    from desktop_tl.core.export import writers

    method = writers.quantize_int8(onnx_bundle.out / "model.onnx", tmp_path / "dynamic.onnx", "dynamic")
    assert "quantize_dynamic" in method
    ops = {node.op_type for node in onnx.load(str(tmp_path / "dynamic.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops and "QuantizeLinear" not in ops


def test_predict_py_without_torch_or_desktop_tl_agrees_with_desktop_tl_predict(
    trained, onnx_bundle, tmp_path, capsys
):
    """The bundle copied elsewhere, run where neither torch nor desktop_tl imports."""
    bundle = shutil.copytree(onnx_bundle.out, tmp_path / "elsewhere" / "bundle")
    images = odd_images(trained["photos"], tmp_path / "new")
    images += sorted((trained["photos"] / "val" / "grass").iterdir())[:2]

    result = run_blocked(
        "torch,torchvision,desktop_tl",
        bundle / "predict.py",
        *map(str, images),
        "--top-k",
        "3",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    bundled = json.loads(result.stdout)

    assert main(["predict", str(trained["run"]), *map(str, images), "--top-k", "3", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)

    assert [r["path"] for r in bundled] == [r["path"] for r in engine] == list(map(str, images))
    worst = 0.0
    for ours, theirs in zip(bundled, engine):
        assert ours["error"] is None and theirs["error"] is None
        assert ours["top"][0]["class"] == theirs["top"][0]["class"], (ours, theirs)
        theirs_by_class = {t["class"]: t["probability"] for t in theirs["top"]}
        for entry in ours["top"]:
            worst = max(worst, abs(entry["probability"] - theirs_by_class[entry["class"]]))
    assert worst <= PROBABILITY_TOL

    # a folder works too, and a broken file is reported without stopping the others
    (tmp_path / "new" / "broken.jpg").write_bytes(b"not an image")
    result = run_blocked(
        "torch,torchvision,desktop_tl", bundle / "predict.py", str(tmp_path / "new"), cwd=tmp_path
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 5
    assert any("broken.jpg: error:" in line for line in lines)


# --------------------------------------------------------------------------- pt2, safetensors


def test_pt2_loads_with_torch_export_and_no_desktop_tl(trained, pt2_bundle, tmp_path):
    from desktop_tl.core.export.loading import load_run_model, reference_outputs, validation_samples

    loaded = load_run_model(trained["run"], "best")
    inputs = validation_samples(trained["run"], loaded, 4).inputs
    np.save(tmp_path / "inputs.npy", inputs.numpy())
    script = tmp_path / "load_pt2.py"
    script.write_text(
        "import sys, json, numpy, torch\n"
        "program = torch.export.load(sys.argv[1])\n"
        "logits = program.module()(torch.from_numpy(numpy.load(sys.argv[2])))\n"
        "print(json.dumps(logits.tolist()))\n"
    )
    result = run_blocked(
        "desktop_tl", script, str(pt2_bundle.model_file), str(tmp_path / "inputs.npy"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    logits = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    assert np.abs(logits - reference_outputs(loaded.model, inputs)).max() < 1e-4
    check = pt2_bundle.parity[0]
    assert check.passed and check.images == 12 and check.max_abs_logit_diff <= check.tolerance
    assert not (pt2_bundle.out / "predict.py").exists()  # predict.py is for the ONNX model


def test_safetensors_holds_the_whole_classifier_and_its_config(trained, safetensors_bundle, tmp_path):
    script = tmp_path / "load_st.py"
    script.write_text(
        "import sys, json\nfrom safetensors import safe_open\n"
        "with safe_open(sys.argv[1], 'np') as f:\n"
        "    print(json.dumps({'keys': list(f.keys()), 'meta': f.metadata()}))\n"
    )
    result = run_blocked("desktop_tl,torch", script, str(safetensors_bundle.model_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    checkpoint_keys = set(
        json.loads(
            json.dumps(
                list(
                    __import__("safetensors.torch", fromlist=["load_file"]).load_file(
                        str(trained["run"] / "checkpoints" / "best" / "model.safetensors")
                    )
                )
            )
        )
    )
    assert set(listed["keys"]) == checkpoint_keys
    assert any(k.startswith("head.") for k in listed["keys"]) and any(
        k.startswith("backbone.") for k in listed["keys"]
    )
    config = json.loads((safetensors_bundle.out / "config.json").read_text())
    assert config["classes"] == list(CLASSES) and config["preprocessing"]["crop"] == 224
    assert json.loads(listed["meta"]["desktop_tl"])["backbone"] == config["backbone"]
    assert safetensors_bundle.parity[0].max_abs_logit_diff == 0.0


# --------------------------------------------------------------------------- the command and bad inputs


def test_export_command_writes_a_bundle_and_refuses_to_overwrite_without_force(
    trained, safetensors_bundle, capsys
):
    out = safetensors_bundle.out
    assert main(["export", str(trained["run"]), "--format", "safetensors", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    first = json.loads((out / "bundle.json").read_text())["exported_at"]

    (out / "notes.txt").write_text("mine")  # a file the user added: --force must not delete it
    assert main(["export", str(trained["run"]), "--format", "safetensors", "--out", str(out), "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()

    assert (
        main(
            [
                "export",
                str(trained["run"]),
                "--format",
                "safetensors",
                "--checkpoint",
                "last",
                "--out",
                str(out),
                "--force",
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "exported safetensors" in captured.out and "top-1 agreement 100.0%" in captured.out
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["checkpoint"] == "last" and bundle["exported_at"] >= first
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _copy_run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained["run"], tmp_path / "copy"))


@pytest.mark.parametrize(
    "case, words",
    [
        ("not_a_run", ["not a desktop-tl run folder"]),
        ("missing", ["does not exist"]),
        ("no_checkpoint", ["no best checkpoint", "before its first epoch"]),
        ("damaged", ["damaged"]),
        ("user_folder", ["not an export bundle", "nothing there is deleted"]),
        ("read_only", ["cannot write into"]),
        ("unknown_format", ["unknown export format 'tflite'", "onnx, pt2, safetensors"]),
        ("inside_run", ["inside the run folder"]),
        ("int8_not_onnx", ["--int8", "--format onnx"]),
        ("int8_images_gone", ["static int8", "put the data folder back", "--int8-method dynamic"]),
    ],
)
def test_bad_inputs_give_one_line_and_change_nothing(case, words, trained, tmp_path, capsys):
    with contextlib.ExitStack() as guard:
        _bad_input(case, words, trained, tmp_path, capsys, guard)


def _bad_input(case, words, trained, tmp_path, capsys, guard):
    run, out, fmt = trained["run"], tmp_path / "bundle", "onnx"
    extra: list[str] = []
    if case == "not_a_run":
        run = tmp_path / "photos"
        shutil.copytree(trained["photos"] / "val", run)
    elif case == "missing":
        run = tmp_path / "no-such-run"
    elif case == "no_checkpoint":  # what a run cancelled before its first epoch leaves
        run = tmp_path / "cancelled"
        run.mkdir()
        shutil.copy(trained["run"] / "run.toml", run / "run.toml")
    elif case == "damaged":
        run = _copy_run(trained, tmp_path)
        weights = run / "checkpoints" / "best" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "user_folder":
        out.mkdir()
        (out / "thesis.docx").write_text("precious")
        extra = ["--force"]
    elif case == "read_only":
        locked = tmp_path / "locked"
        locked.mkdir()
        if os.geteuid() == 0:  # root writes through permissions: a read-only mount instead
            guard.enter_context(read_only(locked))
        else:
            locked.chmod(0o555)
        out = locked / "bundle"
    elif case == "unknown_format":
        fmt = "tflite"
    elif case == "inside_run":
        run = _copy_run(trained, tmp_path)
        out = run / "export"
    elif case == "int8_not_onnx":
        fmt, extra = "pt2", ["--int8"]
    elif case == "int8_images_gone":  # parity falls back to random inputs; calibration cannot
        run = _copy_run(trained, tmp_path)
        split = json.loads((run / "split.json").read_text())
        split["root"] = str(tmp_path / "moved-away")
        (run / "split.json").write_text(json.dumps(split))
        extra = ["--int8"]
    before = snapshot(run) if run.exists() else {}
    listing = sorted(os.listdir(out.parent))
    code = main(["export", str(run), "--format", fmt, "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    if case == "read_only" and os.geteuid() != 0:
        out.parent.chmod(0o755)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("desktop-tl export: error:"), err
    for word in words:
        assert word in err, err
    assert (snapshot(run) if run.exists() else {}) == before
    assert sorted(os.listdir(out.parent)) == listing  # nothing half-written beside it
    if case == "user_folder":
        assert (out / "thesis.docx").read_text() == "precious"
    if case == "read_only":  # the system's own reason, whichever way the folder is locked
        assert "ermission denied" in err or "Read-only file system" in err, err


def test_a_failing_parity_check_is_refused_with_what_failed():
    reference = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    drifted = reference + np.array([[0.0, 0.05, 0.0], [0.0, 0.0, 0.0]])
    check = compare_logits("onnx vs PyTorch", reference, drifted)
    assert not check.passed and check.top1_agreement == 1.0
    assert "largest logit difference 0.05 exceeds 0.003" in check.failure()
    flipped = compare_logits("onnx vs PyTorch", reference, reference[:, [1, 0, 2]])
    assert not flipped.passed and "top-1 agreement 0.0% is below 99.5%" in flipped.failure()
    assert compare_logits("same", reference, reference + 1e-6).passed


def test_an_operator_no_exporter_knows_is_named(tmp_path):
    import torch

    from desktop_tl.core.export import writers

    class Zeta(torch.nn.Module):  # the Riemann zeta function has no ONNX translation
        def forward(self, images):
            return torch.special.zeta(images.flatten(1)[:, :3] + 1.5, torch.tensor(2.0))

    with pytest.raises(writers.UnsupportedExport) as caught:
        writers.write_onnx(Zeta().eval(), torch.rand(2, 3, 4, 4), tmp_path / "zeta.onnx", {})
    assert caught.value.operator == "prims.zeta" and "prims.zeta" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1 and "Traceback" in caught.value.details


def test_the_run_folder_is_unchanged_by_every_export(trained, onnx_bundle, pt2_bundle, safetensors_bundle):
    assert snapshot(trained["run"]) == trained["before"]
