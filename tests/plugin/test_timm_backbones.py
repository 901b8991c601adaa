"""The timm backbone plugin, through the real plugin host.

No timm weights can be downloaded here, so the tests write their own files: a randomly
initialised timm model's state dict as ``model.safetensors``, the file timm publishes on
the Hugging Face hub. Small models of four families (ResNet, EfficientNet, ConvNeXt, ViT)
are listed, staged, trained on real photos, frozen by block, cached and used to predict.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import timm
import torch
from helpers_training import sample_subset
from safetensors.torch import load_file, save_file

from desktop_tl.cli import main
from desktop_tl.core.config import RunConfig
from desktop_tl.core.predict import Predictor
from desktop_tl.core.training import Trainer
from desktop_tl.plugin import (
    BackboneNotFoundError,
    Preprocessing,
    UserError,
    WeightsFileError,
    WeightsUnavailableError,
    get_host,
)

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bicubic"}

#: model -> (top-level stages, feature dim, preprocessing from timm's data config,
#:           the block trained in the freeze test, the stage whose output is cached then)
FAMILIES = {
    "resnet10t.c3_in1k": (
        ["stem", "layer1", "layer2", "layer3", "layer4", "head"],
        512,
        Preprocessing(resize=201, crop=176, **IMAGENET),  # 176 / crop_pct 0.875
        "layer4",
        "layer3",  # one block per layer: not split
    ),
    "efficientnet_b0.ra_in1k": (
        ["stem", "blocks", "head"],
        1280,
        Preprocessing(resize=256, crop=224, **IMAGENET),
        "blocks.6",
        "blocks.5",
    ),
    "convnext_atto.d2_in1k": (
        ["stem", "stages", "head"],
        320,
        Preprocessing(resize=256, crop=224, **IMAGENET),
        "stages.3",
        "stages.2",
    ),
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": (
        ["stem", "blocks", "norm", "head"],
        192,
        Preprocessing(
            resize=248, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic"
        ),  # crop_pct 0.9
        "blocks.11",
        "blocks.10",
    ),
}
RESNET = "resnet10t.c3_in1k"


@pytest.fixture(scope="module")
def host():
    return get_host()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A private, empty Hugging Face cache, the hub not switched off."""
    path = tmp_path / "huggingface" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_subset(tmp_path_factory.mktemp("photos"), n_train=4, n_val=2)


def timm_state(name: str, seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """A randomly initialised timm model's state dict, as timm publishes its weights."""
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model(name, **kwargs).state_dict().items()}


def write_hf_cache(cache: Path, repo: str, state, revision: str = "0" * 40) -> Path:
    """``model.safetensors`` as ``hf download`` leaves it: refs/main names the snapshot,
    whose entry links to the content under its sha256 in blobs/."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "blobs").mkdir()
    staging = folder / "blobs" / "incoming"
    save_file(state, staging)
    blob = staging.rename(folder / "blobs" / hashlib.sha256(staging.read_bytes()).hexdigest())
    path = folder / "snapshots" / revision / "model.safetensors"
    path.parent.mkdir(parents=True)
    path.symlink_to(Path("..", "..", "blobs", blob.name))
    return path


def provider_and(host, name: str):
    return host.resolve_backbone(f"timm:{name}")


# --------------------------------------------------------------------------- listing


def test_the_host_lists_pretrained_timm_models_under_their_weights_tag(host):
    record = next(r for r in host.records if r.name == "timm")
    assert (record.distribution, record.status) == ("dtl-timm", "loaded")
    models = host.provider_models("timm")
    assert set(FAMILIES) <= set(models)
    assert all("." in name for name in models)  # every name carries its weights tag
    # so a bare torchvision name stays unambiguous
    assert host.resolve_backbone("resnet18")[0].id == "torchvision"
    with pytest.raises(BackboneNotFoundError, match=r"resnet18\.\w+"):
        host.resolve_backbone("timm:resnet18")


def test_an_architecture_without_its_tag_is_refused_with_the_tags_offered(host):
    provider, _ = provider_and(host, RESNET)
    with pytest.raises(UserError, match=r"named with its weights tag, e\.g\. resnet18\.\w+"):
        provider.create("resnet18", "none")


# --------------------------------------------------------------------------- staging


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_is_staged_into_named_blocks_computing_timm_s_features(host, name):
    stages, feature_dim, preprocessing, block, _ = FAMILIES[name]
    provider, model = provider_and(host, name)
    torch.manual_seed(0)
    backbone = host.create_backbone(provider, model, "none")
    torch.manual_seed(0)  # the same random weights, in timm's own network
    reference = timm.create_model(name)
    reference.reset_classifier(0)

    assert [n for n, _ in backbone.module.named_children()] == stages
    assert block in dict(backbone.module.named_modules())
    assert backbone.preprocessing == preprocessing
    assert backbone.feature_dim == feature_dim
    assert backbone.provenance.label == "random initialisation" and backbone.categories is None
    assert sum(p.numel() for p in backbone.module.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    x = torch.randn(2, 3, preprocessing.crop, preprocessing.crop)
    backbone.module.eval()
    reference.eval()
    with torch.no_grad():
        features = backbone.module(x)
        torch.testing.assert_close(features, reference(x), rtol=0, atol=1e-6)
    assert features.shape == (2, feature_dim)


@pytest.mark.parametrize(
    "name, stages",
    [
        ("mobilenetv3_small_050.lamb_in1k", ["stem", "blocks", "head"]),
        ("regnetx_002.pycls_in1k", ["body"]),  # no layout for its family: the whole network
    ],
)
def test_other_models_are_staged_too_or_kept_whole(host, name, stages):
    provider, model = provider_and(host, name)
    torch.manual_seed(0)
    backbone = host.create_backbone(provider, model, "none")
    torch.manual_seed(0)
    reference = timm.create_model(name)
    reference.reset_classifier(0)
    assert [n for n, _ in backbone.module.named_children()] == stages
    crop = backbone.preprocessing.crop
    x = torch.randn(2, 3, crop, crop)
    backbone.module.eval()
    reference.eval()
    with torch.no_grad():
        features = backbone.module(x)
        torch.testing.assert_close(features, reference(x), rtol=0, atol=1e-6)
    assert features.shape == (2, backbone.feature_dim)


# --------------------------------------------------------------------------- training


def run_config(data: Path, out: Path, name: str, weights: Path, **freeze) -> RunConfig:
    config = RunConfig()
    config.data.path = str(data)
    config.data.num_workers = 0
    config.model.backbone = f"timm:{name}"
    config.model.weights = str(weights)
    config.model.head = "linear"
    config.out = str(out)
    config.train.batch_size = 4
    config.train.epochs = 1
    config.train.device = "cpu"
    config.train.precision = "fp32"
    config.freeze.preset = freeze.get("preset", "head-only")
    config.freeze.overrides = freeze.get("overrides", {})
    return config


def train(config: RunConfig, host):
    finished = Trainer(config, host=host).run()
    assert finished.status == "completed", finished.reason
    return finished


def cached_at(summary) -> list[tuple[str, str]]:
    return [(e["subset"], e["at"]) for e in summary["feature_cache"] if e["event"] == "built"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_trains_frozen_by_block_caches_features_and_predicts(host, name, photos, tmp_path):
    _, _, _, block, before_block = FAMILIES[name]
    weights = tmp_path / "lab" / "model.safetensors"  # a file the user chose
    weights.parent.mkdir()
    save_file(timm_state(name, seed=1), weights)
    provider, model = provider_and(host, name)
    initial = host.create_backbone(provider, model, str(weights)).module.state_dict()

    # one block trains: it alone changes; the frozen stages before it are cached
    unfrozen = train(
        run_config(
            photos, tmp_path / "block", name, weights, preset="custom", overrides={f"backbone.{block}": True}
        ),
        host,
    )
    assert cached_at(unfrozen.summary) == [
        ("train", f"backbone.{before_block}"),
        ("val", f"backbone.{before_block}"),
    ]
    trained = load_file(tmp_path / "block" / "checkpoints" / "last" / "model.safetensors")
    inside = [k for k in initial if k.startswith(block + ".")]
    assert any(not torch.equal(trained[f"backbone.{k}"], initial[k]) for k in inside)
    for key, value in initial.items():
        if not key.startswith(block + "."):
            assert torch.equal(trained[f"backbone.{key}"], value), key

    # head only: the whole backbone's features are extracted once and the head trains on them
    head_only = train(run_config(photos, tmp_path / "head", name, weights), host)
    assert cached_at(head_only.summary) == [("train", "backbone.head"), ("val", "backbone.head")]

    predictor = Predictor.from_run_dir(tmp_path / "head", host=host)
    images = sorted(path for path in (photos / "val").rglob("*") if path.is_file())
    predictions = predictor.predict(images, top_k=2)
    assert len(predictions) == len(images) == 4
    for prediction in predictions:
        assert prediction.error is None
        assert {label for label, _ in prediction.top} == {"brick", "grass"}
        assert sum(p for _, p in prediction.top) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- weights


def test_a_timm_safetensors_file_is_imported_and_loaded(host, places, hf_cache, capsys):
    state = timm_state(RESNET, seed=2)
    source = places["outside"] / "model.safetensors"  # as the Hugging Face hub names it
    source.parent.mkdir(parents=True)
    save_file(state, source)
    assert main(["weights", "import", str(source), "--model", f"timm:{RESNET}"]) == 0
    target = places["weights"] / f"{RESNET}.safetensors"
    assert target.read_bytes() == source.read_bytes()
    assert str(target) in capsys.readouterr().out

    provider, model = provider_and(host, RESNET)
    status = provider.weights_status(model)
    assert (status.available, status.source, status.path) == (True, "weights-dir", str(target))
    backbone = host.create_backbone(provider, model, "auto")
    assert (backbone.provenance.source, backbone.provenance.path) == ("weights-dir", str(target.resolve()))
    assert backbone.provenance.pretrained
    assert torch.equal(backbone.module.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])
    assert torch.equal(backbone.module.stem.bn1.running_var, state["bn1.running_var"])
    assert len(backbone.categories) == 1000 and backbone.categories[281].startswith("tabby")


def test_import_recognises_the_model_from_the_file_name(places, hf_cache):
    source = places["outside"] / f"{RESNET}.safetensors"
    source.parent.mkdir(parents=True)
    save_file(timm_state(RESNET, seed=3), source)
    assert main(["weights", "import", str(source)]) == 0
    assert (places["weights"] / f"{RESNET}.safetensors").is_file()


def test_import_refuses_a_file_of_another_model(places, hf_cache, capsys):
    source = places["outside"] / "model.safetensors"
    source.parent.mkdir(parents=True)
    save_file(timm_state("convnext_atto.d2_in1k"), source)
    assert main(["weights", "import", str(source), "--model", f"timm:{RESNET}"]) == 2
    assert "do not fit" in capsys.readouterr().err
    assert not places["weights"].exists() or not any(places["weights"].iterdir())


def test_the_hugging_face_cache_is_used_offline_before_the_weights_folder(
    host, places, hf_cache, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    state = timm_state(RESNET, seed=4)
    cached = write_hf_cache(hf_cache, f"timm/{RESNET}", state)
    places["weights"].mkdir(parents=True)
    save_file(timm_state(RESNET, seed=5), places["weights"] / f"{RESNET}.safetensors")
    provider, model = provider_and(host, RESNET)
    status = provider.weights_status(model)
    assert (status.available, status.source, status.path) == (True, "hf-cache", str(cached))
    backbone = host.create_backbone(provider, model, "auto")
    assert (backbone.provenance.source, backbone.provenance.path) == ("hf-cache", str(cached.resolve()))
    assert backbone.provenance.verified is True  # its content hashes to its blob's name
    assert torch.equal(backbone.module.layer1[0].conv2.weight, state["layer1.0.conv2.weight"])


def test_a_damaged_file_in_the_hugging_face_cache_is_refused(host, places, hf_cache):
    cached = write_hf_cache(hf_cache, f"timm/{RESNET}", timm_state(RESNET, seed=7))
    blob = cached.resolve()
    other = timm_state(RESNET, seed=8)  # other weights under the same blob name
    save_file(other, blob)
    provider, model = provider_and(host, RESNET)
    with pytest.raises(WeightsFileError, match=f"sha256 is [0-9a-f]{{64}}, but {blob.name} is expected"):
        host.create_backbone(provider, model, "auto")


def test_downloads_only_when_allowed_and_never_with_hf_hub_offline(host, places, hf_cache, monkeypatch):
    provider, model = provider_and(host, RESNET)
    status = provider.weights_status(model)
    assert (status.available, status.source) == (False, "missing")
    assert f"hf download timm/{RESNET} model.safetensors" in status.detail
    with pytest.raises(
        WeightsUnavailableError, match=f"weights import model.safetensors --model timm:{RESNET}"
    ):
        host.create_backbone(provider, model, "auto")

    monkeypatch.setenv("DTL_ALLOW_DOWNLOAD", "1")
    status = provider.weights_status(model)
    assert (status.available, status.source) == (True, "download")
    assert f"https://huggingface.co/timm/{RESNET}/resolve/main/model.safetensors" in status.detail

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = provider.weights_status(model)
    assert (status.available, status.source) == (False, "missing")
    assert "HF_HUB_OFFLINE is set" in status.detail


def test_a_file_fine_tuned_on_other_classes_still_gives_its_features(host, places, hf_cache, tmp_path):
    state = timm_state(RESNET, seed=6, num_classes=5)
    path = tmp_path / "five-classes.safetensors"
    save_file(state, path)
    provider, model = provider_and(host, RESNET)
    backbone = host.create_backbone(provider, model, str(path))
    assert backbone.provenance.source == "file" and backbone.categories is None
    assert torch.equal(backbone.module.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_a_file_of_another_model_is_refused_naming_keys(host, places, hf_cache, tmp_path):
    path = tmp_path / "other.safetensors"
    save_file(timm_state("convnext_atto.d2_in1k"), path)
    provider, model = provider_and(host, RESNET)
    with pytest.raises(WeightsFileError, match=r"do not fit.*missing key.*conv1\.0\.weight"):
        host.create_backbone(provider, model, str(path))
