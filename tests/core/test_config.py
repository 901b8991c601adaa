import pytest

from desktop_tl.core.config import ConfigError, RunConfig, parse_freeze_preset


def test_round_trip_through_toml(tmp_path):
    config = RunConfig()
    config.data.path = str(tmp_path / "images")
    config.model.backbone = "torchvision:resnet18"
    config.model.head = "mlp"
    config.model.head_options = {"hidden_sizes": [64, 32], "dropout": 0.1}
    config.freeze.preset = "last:2"
    config.freeze.overrides = {"backbone.layer4.1": False, "backbone.layer3": True}
    config.train.epochs = 3
    config.train.lr = 3e-4
    path = tmp_path / "project.toml"
    config.save(path)
    assert RunConfig.load(path) == config


@pytest.mark.parametrize(
    "text, words",
    [
        ("[train]\nepochs = 0\n", ["train.epochs", "out of range"]),
        ("[train]\noptimizer = 'rmsprop'\n", ["train.optimizer", "adam"]),
        ("[train]\nepoch = 3\n", ["unknown setting", "train.epoch", "epochs"]),
        ("[train]\nlr = 'fast'\n", ["train.lr", "float"]),
        ("[freeze]\npreset = 'last:0'\n", ["freeze preset", "last:N"]),
        ("[data]\naugment = 'heavy'\n", ["data.augment", "light"]),
        ("[data\npath = 'x'\n", ["not valid TOML"]),
        ("train = 3\n", ["[train] must be a table"]),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(text, words):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml(text)
    for word in words:
        assert word in str(info.value)


def test_missing_run_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "nope.toml")


def test_freeze_presets_parse():
    assert parse_freeze_preset("head-only") == ("head-only", 0)
    assert parse_freeze_preset("last:3") == ("last", 3)
    with pytest.raises(ConfigError):
        parse_freeze_preset("last:x")
