import pytest
import yaml

from dfdetect.errors import BadInputError
from dfdetect.training.config import PRESETS, config_from_dict, load_config


def test_presets_are_valid_and_distinct():
    configs = {name: load_config(name) for name in PRESETS}
    assert configs["smoke"].model.backbone == "efficientnet_b0"
    assert configs["celebdf_b4"].model.backbone == "efficientnet_b4"
    assert configs["smoke"].data.prepared == "data/prepared/demo"
    assert len({c.model.image_size for c in configs.values()}) > 1


def test_yaml_then_set_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"image_size": 128}, "train": {"epochs": 3}}))
    c = load_config("smoke", str(path), ["train.epochs=5", "data.augment=false", "model.dense_units=[64,32]"])
    assert (c.model.image_size, c.train.epochs, c.data.augment, c.model.dense_units) == (128, 5, False, [64, 32])


def test_saved_config_round_trips():
    c = load_config("dfdc_b0", sets=["train.learning_rate=0.0003"])
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict())))
    assert again == c


@pytest.mark.parametrize("sets, message", [
    (["model.backbone=vgg16"], "model.backbone 'vgg16' is unknown; allowed: efficientnet_b0"),
    (["model.colour=red"], "unknown config field 'model.colour'; known: model.backbone"),
    (["trainer.epochs=3"], "unknown config field 'trainer'"),
    (["train.epochs=many"], "train.epochs must be int"),
    (["data.balance=oversample"], "data.balance 'oversample' is unknown; allowed: class_weight, sample, none"),
    (["eval.target_fpr=2"], "eval.target_fpr must be in"),
    (["epochs"], "section.field=value"),
])
def test_bad_overrides_are_named(sets, message):
    with pytest.raises(BadInputError, match=message.replace("(", "\\(").replace("[", "\\[")):
        load_config("smoke", sets=sets)


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="unknown preset 'huge'; allowed: smoke, dfdc_b0, celebdf_b4"):
        load_config("huge")
    with pytest.raises(BadInputError, match="does not exist"):
        load_config("smoke", str(tmp_path / "none.yaml"))
