"""Offline-first weights resolution: safe reading, strict loading, where files are found."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from desktop_tl.core import weights as w
from desktop_tl.errors import UserError
from desktop_tl.plugin.descriptors import WeightsFileError, WeightsUnavailableError


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class WritesMarker:
    """An object whose unpickling creates a file: stands in for a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- places


def test_weights_dir_comes_from_the_environment_else_the_user_data_folder(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.setenv("DTL_WEIGHTS_DIR", str(tmp_path / "lab-weights"))
    assert w.weights_dir() == tmp_path / "lab-weights"
    monkeypatch.delenv("DTL_WEIGHTS_DIR")
    expected = Path(platformdirs.user_data_dir("desktop_tl", appauthor=False)) / "weights"
    assert w.weights_dir() == expected


def test_hub_checkpoint_dir_follows_torch_home(places):
    assert w.hub_checkpoint_dir() == places["hub"]
    assert w.hub_checkpoint_dir() == Path(torch.hub.get_dir()) / "checkpoints"


def test_downloads_are_off_unless_allowed(monkeypatch):
    monkeypatch.delenv("DTL_ALLOW_DOWNLOAD", raising=False)
    assert not w.downloads_allowed()
    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "0")
    assert not w.downloads_allowed()
    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    assert w.downloads_allowed()


def test_file_name_from_url_is_what_torch_hub_stores():
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert w.file_name_from_url(url) == "resnet18-f37072fd.pth"


def test_sha256_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"desktop_tl" * 1000)
    assert w.sha256_file(path) == sha256(path)


# --------------------------------------------------------------------------- reading


def test_reads_safetensors_and_pth(tmp_path):
    state = tiny_net().state_dict()
    save_file(dict(state), tmp_path / "net.safetensors")
    torch.save(state, tmp_path / "net.pth")
    torch.save(state, tmp_path / "net.pt")
    for name in ("net.safetensors", "net.pth", "net.pt"):
        loaded = w.load_state_dict_file(tmp_path / name)
        assert set(loaded) == set(state)
        for key in state:
            assert torch.equal(loaded[key], state[key])


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict"])
def test_unwraps_training_checkpoints(tmp_path, wrapper):
    state = tiny_net().state_dict()
    torch.save({wrapper: state, "epoch": 7, "best_acc": 0.9}, tmp_path / "ckpt.pth")
    loaded = w.load_state_dict_file(tmp_path / "ckpt.pth")
    assert set(loaded) == set(state)


def test_strips_the_data_parallel_prefix(tmp_path):
    state = tiny_net().state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pth")
    assert set(w.load_state_dict_file(tmp_path / "dp.pth")) == set(state)


def test_refuses_a_pickle_that_would_run_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": tiny_net().state_dict(), "extra": WritesMarker(marker)}, path)

    with pytest.raises(WeightsFileError, match="refused.*unrestricted unpickling"):
        w.load_state_dict_file(path)
    assert not marker.exists()

    # The payload is real: unrestricted unpickling does run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_refuses_a_whole_pickled_model(tmp_path):
    torch.save(tiny_net(), tmp_path / "model.pth")  # the module object, not its state dict
    with pytest.raises(WeightsFileError, match="refused"):
        w.load_state_dict_file(tmp_path / "model.pth")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("weights.pth", b"not a checkpoint at all", "cannot read weights file"),
        ("weights.safetensors", b"\x00\x01garbage", "cannot read weights file"),
        ("weights.ckpt", b"", "use a .safetensors, .pth or .pt file"),
    ],
)
def test_unreadable_files_get_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=message):
        w.load_state_dict_file(path)


def test_a_file_without_tensors_is_refused(tmp_path):
    torch.save({"epoch": 3, "note": "no weights here"}, tmp_path / "meta.pth")
    with pytest.raises(WeightsFileError, match="holds no tensors"):
        w.load_state_dict_file(tmp_path / "meta.pth")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsFileError, match="does not exist"):
        w.load_state_dict_file(tmp_path / "nowhere.pth")


# --------------------------------------------------------------------------- loading


def test_load_into_model_copies_every_tensor():
    source, target = tiny_net(seed=1), tiny_net(seed=2)
    assert w.load_into_model(target, source.state_dict(), "file.pth") == []
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_load_into_model_names_missing_and_unexpected_keys():
    state = tiny_net().state_dict()
    state.pop("1.running_var")
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(WeightsFileError) as info:
        w.load_into_model(tiny_net(), state, "lab.pth")
    message = str(info.value)
    assert "lab.pth" in message
    assert "1.running_var" in message and "extra.weight" in message


def test_load_into_model_names_shape_mismatches():
    state = tiny_net().state_dict()
    state["0.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(WeightsFileError, match=r"0\.weight \(8, 3, 3, 3\) vs \(4, 3, 3, 3\)"):
        w.load_into_model(tiny_net(), state, "lab.pth")


def test_optional_prefixes_tolerate_another_classifier():
    other = tiny_net(seed=3)
    state = other.state_dict()
    state["3.weight"] = torch.zeros(10, 4 * 6 * 6)  # fine-tuned on 10 classes
    state["3.bias"] = torch.zeros(10)
    target = tiny_net(seed=4)
    skipped = w.load_into_model(target, state, "ft.pth", optional_prefixes=("3.",))
    assert skipped == ["3.weight", "3.bias"]
    assert torch.equal(target.state_dict()["0.weight"], other.state_dict()["0.weight"])
    # ... but everything else must still fit
    state.pop("0.bias")
    with pytest.raises(WeightsFileError, match="0.bias"):
        w.load_into_model(tiny_net(), state, "ft.pth", optional_prefixes=("3.",))


# --------------------------------------------------------------------------- resolving


FILE = "tinynet-0a1b2c3d.pth"


def test_none_means_random_and_says_so(places):
    state, provenance = w.resolve_weights("tinynet", "none", [FILE])
    assert state is None
    assert provenance.source == "random" and provenance.pretrained is False
    assert "random" in provenance.detail


def test_nothing_on_the_machine_gives_the_way_out(places):
    with pytest.raises(WeightsUnavailableError) as info:
        w.resolve_weights("resnet18", "auto", ["resnet18-f37072fd.pth"])
    assert str(info.value) == (
        "No pretrained weights for resnet18 on this machine. Import a weights file "
        "(desktop-tl weights import FILE --model resnet18), put resnet18-f37072fd.pth in "
        f"{places['weights']}, or choose random initialisation (--weights none)"
    )
    assert isinstance(info.value, UserError)
    status = w.local_weights_status("resnet18", ["resnet18-f37072fd.pth"])
    assert not status.available and status.source == "missing"
    assert status.detail == str(info.value)


def test_weights_folder_file_is_found_with_provenance(places):
    state = tiny_net(seed=5).state_dict()
    path = places["weights"] / FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    # its name promises a sha256 starting 0a1b2c3d; a file that is not that one is refused
    with pytest.raises(WeightsFileError, match="0a1b2c3d"):
        w.resolve_weights("tinynet", "auto", [FILE])
    path.unlink()
    path = path.with_suffix(".safetensors")
    save_file(dict(state), path)

    status = w.local_weights_status("tinynet", [FILE])
    assert (status.available, status.source, status.path) == (True, "weights-dir", str(path))
    loaded, provenance = w.resolve_weights("tinynet", "auto", [FILE], label="Tiny.V1")
    assert provenance.source == "weights-dir" and provenance.pretrained
    assert provenance.path == str(path.resolve())
    assert provenance.sha256 == sha256(path)
    assert "Tiny.V1" in provenance.detail
    # a .safetensors copy cannot be checked against the published hash, and says so
    assert "unverified" in provenance.detail
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_hub_cache_comes_before_the_weights_folder(places):
    for folder, seed in ((places["hub"], 6), (places["weights"], 7)):
        folder.mkdir(parents=True)
        save_file(dict(tiny_net(seed=seed).state_dict()), folder / "tinynet-0a1b2c3d.safetensors")
    loaded, provenance = w.resolve_weights("tinynet", "auto", [FILE])
    assert provenance.source == "hub-cache"
    assert provenance.path == str((places["hub"] / "tinynet-0a1b2c3d.safetensors").resolve())
    assert torch.equal(loaded["0.weight"], tiny_net(seed=6).state_dict()["0.weight"])


def test_a_safetensors_copy_under_the_usual_stem_is_found(places):
    places["weights"].mkdir(parents=True)
    path = places["weights"] / "tinynet-0a1b2c3d.safetensors"
    save_file(dict(tiny_net().state_dict()), path)
    _, provenance = w.resolve_weights("tinynet", "auto", [FILE])
    assert provenance.path == str(path.resolve())


def test_a_chosen_file_wins_and_is_recorded(places, tmp_path):
    places["hub"].mkdir(parents=True)
    torch.save(tiny_net(seed=1).state_dict(), places["hub"] / FILE)
    chosen = tmp_path / "mine.safetensors"
    save_file(dict(tiny_net(seed=2).state_dict()), chosen)
    loaded, provenance = w.resolve_weights("tinynet", str(chosen), [FILE])
    assert (provenance.source, provenance.path, provenance.sha256) == (
        "file",
        str(chosen.resolve()),
        sha256(chosen),
    )
    assert torch.equal(loaded["0.weight"], tiny_net(seed=2).state_dict()["0.weight"])


def test_a_chosen_file_that_does_not_exist_is_an_error(places, tmp_path):
    with pytest.raises(WeightsFileError, match="does not exist.*'auto'.*'none'"):
        w.resolve_weights("tinynet", str(tmp_path / "typo.pth"), [FILE])


def test_an_unsafe_file_in_the_weights_folder_is_refused(places, tmp_path):
    marker = tmp_path / "payload-ran"
    places["weights"].mkdir(parents=True)
    torch.save({"w": torch.zeros(1), "x": WritesMarker(marker)}, places["weights"] / FILE)
    with pytest.raises(WeightsFileError, match="refused"):
        w.resolve_weights("tinynet", "auto", [FILE])
    assert not marker.exists()


def _published(tmp_path: Path, state) -> tuple[str, str]:
    """A weights file served from a file:// URL whose name carries its hash prefix, as
    download.pytorch.org names them."""
    staging = tmp_path / "server" / "tmp.pth"
    staging.parent.mkdir(parents=True)
    torch.save(state, staging)
    name = f"tinynet-{sha256(staging)[:8]}.pth"
    served = staging.with_name(name)
    staging.rename(served)
    return served.as_uri(), name


def test_download_happens_only_when_allowed(places, tmp_path, monkeypatch):
    state = tiny_net(seed=8).state_dict()
    url, name = _published(tmp_path, state)

    with pytest.raises(WeightsUnavailableError):
        w.resolve_weights("tinynet", "auto", [name], download_url=url)
    assert not w.local_weights_status("tinynet", [name], download_url=url).available

    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    status = w.local_weights_status("tinynet", [name], download_url=url)
    assert (status.available, status.source) == (True, "download")
    loaded, provenance = w.resolve_weights("tinynet", "auto", [name], download_url=url)
    target = places["hub"] / name
    assert provenance.source == "download" and provenance.path == str(target.resolve())
    assert provenance.sha256 == sha256(target) and "not the published" not in provenance.detail
    assert torch.equal(loaded["0.weight"], state["0.weight"])
    # next time it comes from the hub cache, without downloading
    monkeypatch.delenv("DTL_ALLOW_DOWNLOAD")
    assert w.resolve_weights("tinynet", "auto", [name])[1].source == "hub-cache"


def test_a_failed_download_says_what_to_do(places, tmp_path, monkeypatch):
    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    url = (tmp_path / "missing" / "tinynet-0a1b2c3d.pth").as_uri()
    with pytest.raises(WeightsUnavailableError, match="downloading .* failed.*--weights none"):
        w.resolve_weights("tinynet", "auto", ["tinynet-0a1b2c3d.pth"], download_url=url)


def test_a_download_with_the_wrong_hash_is_rejected(places, tmp_path, monkeypatch):
    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    url, name = _published(tmp_path, tiny_net().state_dict())
    wrong = Path(url.removeprefix("file://")).with_name("tinynet-00000000.pth")
    Path(url.removeprefix("file://")).rename(wrong)
    with pytest.raises(WeightsUnavailableError, match="failed"):
        w.resolve_weights("tinynet", "auto", [wrong.name], download_url=wrong.as_uri())
    assert not (places["hub"] / wrong.name).exists()
