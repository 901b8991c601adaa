"""The host owns weights: a provider declares where they may be; the host finds them,
checks their sha256, reads them safely and refuses a build that does not load them."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from helpers_weights import random_state, save_state, sha256
from desktop_tl.plugin import (
    Backbone,
    BackboneProvider,
    DescriptorError,
    Preprocessing,
    WeightsFileError,
    WeightsLocation,
    WeightsSource,
    WeightsUnavailableError,
    sequential,
)
from desktop_tl.plugin.manager import get_host

RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's name: its sha256 starts f37072fd


def tiny_network() -> nn.Sequential:
    return sequential(
        [("conv", nn.Conv2d(3, 4, 3)), ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten(1))]
    )


def tiny_provider(source: WeightsSource, *, load: bool = True) -> BackboneProvider:
    def build(model_name, weights):
        module = tiny_network()
        if weights is not None and load:
            weights.load_into(module)
        return Backbone(module, feature_dim=4, preprocessing=Preprocessing(resize=40, crop=32))

    return BackboneProvider(
        id="tiny", display_name="Tiny", list_models=["tiny4"], build=build, weights_source=lambda name: source
    )


def saved_tiny(path, seed=0):
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(dict(tiny_network().state_dict()), path)
    return path


# --------------------------------------------------------------------------- the bad input first


def test_a_mislabelled_torchvision_file_is_refused_naming_both_hashes(places):
    path = save_state(random_state(seed=7), places["weights"] / RESNET18_FILE)
    provider, model = get_host().resolve_backbone("torchvision:resnet18")
    assert provider.host_loads_weights
    with pytest.raises(WeightsFileError) as info:
        provider.create(model, "auto")
    message = str(info.value)
    assert "f37072fd" in message and sha256(path) in message and "refused" in message


def test_the_same_file_chosen_explicitly_loads_marked_unverified(places):
    path = save_state(random_state(seed=7), places["outside"] / RESNET18_FILE)
    provider, model = get_host().resolve_backbone("torchvision:resnet18")
    provenance = provider.create(model, str(path)).provenance
    assert provenance.verified is False and provenance.label == "pretrained (unverified)"
    assert provenance.to_dict()["verified"] is False
    assert "unverified" in provenance.detail and sha256(path) in provenance.detail


# --------------------------------------------------------------------------- declared sha256


def test_a_declared_sha256_is_checked_for_a_file_under_the_declared_name(places):
    good = saved_tiny(places["outside"] / "good.safetensors", seed=1)
    declared = sha256(good)
    wrong = saved_tiny(places["weights"] / "tiny4.safetensors", seed=2)
    provider = tiny_provider(WeightsSource(file_names=("tiny4.safetensors",), sha256=declared))
    with pytest.raises(WeightsFileError) as info:
        provider.create("tiny4", "auto")
    assert declared in str(info.value) and sha256(wrong) in str(info.value)

    wrong.write_bytes(good.read_bytes())  # now the published file
    backbone = provider.create("tiny4", "auto")
    assert backbone.provenance.verified is True
    assert (backbone.provenance.source, backbone.provenance.sha256) == ("weights-dir", declared)
    assert torch.equal(backbone.module.conv.weight, load_file(good)["conv.weight"])


def test_a_location_with_a_sha256_that_does_not_match_is_refused(places):
    path = saved_tiny(places["outside"] / "shipped.safetensors")
    other = hashlib.sha256(b"other").hexdigest()
    provider = tiny_provider(
        WeightsSource(locations=(WeightsLocation(str(path), "package", "shipped", sha256=other),))
    )
    assert provider.weights_status("tiny4").source == "package"
    with pytest.raises(WeightsFileError, match=other):
        provider.create("tiny4", "auto")


def test_a_file_without_anything_to_check_against_is_neither_verified_nor_refused(places):
    saved_tiny(places["weights"] / "tiny4.safetensors")
    provider = tiny_provider(WeightsSource(file_names=("tiny4.safetensors",)))
    provenance = provider.create("tiny4", "auto").provenance
    assert provenance.verified is None and provenance.label == "pretrained"


# --------------------------------------------------------------------------- what the provider gets


def test_a_build_that_ignores_the_weights_it_was_given_is_refused(places):
    saved_tiny(places["weights"] / "tiny4.safetensors")
    provider = tiny_provider(WeightsSource(file_names=("tiny4.safetensors",)), load=False)
    with pytest.raises(WeightsFileError, match="did not load them"):
        provider.create("tiny4", "auto")


def test_weights_that_do_not_fit_are_refused_naming_the_first_mismatches(places):
    path = places["weights"] / "tiny4.safetensors"
    path.parent.mkdir(parents=True)
    save_file(
        {"conv.weight": torch.zeros(8, 3, 3, 3), "conv.bias": torch.zeros(8), "extra.weight": torch.zeros(1)},
        path,
    )
    provider = tiny_provider(WeightsSource(file_names=("tiny4.safetensors",)))
    with pytest.raises(WeightsFileError) as info:
        provider.create("tiny4", "auto")
    assert "conv.weight (8, 3, 3, 3) vs (4, 3, 3, 3)" in str(info.value)
    assert "extra.weight" in str(info.value)


def test_no_weights_and_random_initialisation_are_told_apart(places):
    provider = tiny_provider(
        WeightsSource(file_names=("tiny4.safetensors",), hint="They ship in the tiny-weights package.")
    )
    status = provider.weights_status("tiny4")
    assert status.available is False and "tiny-weights package" in status.detail
    with pytest.raises(WeightsUnavailableError, match="tiny4.safetensors"):
        provider.create("tiny4", "auto")
    provenance = provider.create("tiny4", "none").provenance
    assert (provenance.source, provenance.pretrained) == ("random", False)
    assert provider.weight_file_names("tiny4") == ["tiny4.safetensors"]


def test_a_declared_sha256_must_be_a_sha256():
    with pytest.raises(DescriptorError, match="64 hex digits"):
        WeightsSource(sha256="f37072fd")
