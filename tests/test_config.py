import json
from pathlib import Path

import pytest

from search.config import Config, ConfigError, SpaceConfig, from_mapping, load_toml, parse_duration, parse_int_list
from search.study import study_config


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("45", 45), ("1.5m", 90)]
)
def test_budget_parsing(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "10x", "", "m", "0s", "-5", "10m abc"])
def test_bad_budget_names_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_duration(text)


def test_int_lists() -> None:
    assert parse_int_list("16-32-64", "width") == (16, 32, 64)
    assert parse_int_list("8,16", "width") == (8, 16)
    with pytest.raises(ConfigError, match="'x'"):
        parse_int_list("8,x", "width")
    with pytest.raises(ConfigError, match="'0'"):
        parse_int_list("0,8", "width")


def settings(tmp_path: Path, text: str) -> Config:
    """The validated config of a settings file holding ``text``."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    return from_mapping(load_toml(path)).validate()


def test_toml_overlays_defaults(tmp_path: Path) -> None:
    config = settings(
        tmp_path, '[space]\nlayers = 4\nfrozen_layers = [1, 2]\n[search]\nbudget_s = "2m"\n[data]\ndata_dir = "~/d"\n'
    )
    assert config.space.layers == 4 and config.space.frozen_layers == (1, 2)
    assert config.search.budget_s == 120
    assert config.data.data_dir == Path("~/d").expanduser()
    assert config.proxy == Config().proxy


def test_proxy_images_default_to_2000_and_all_means_every_image(tmp_path: Path) -> None:
    assert Config().proxy.train_images == 2000
    assert settings(tmp_path, '[proxy]\ntrain_images = "all"\n').proxy.train_images is None
    with pytest.raises(ConfigError, match="proxy training images \\(a count or 'all'\\) 'most'"):
        settings(tmp_path, '[proxy]\ntrain_images = "most"\n')


def test_proxy_lr_fan_in_is_off_by_default_and_set_by_a_channel_count_or_none(tmp_path: Path) -> None:
    assert Config().proxy.lr_fan_in is None
    assert settings(tmp_path, "[proxy]\nlr_fan_in = 16\n").proxy.lr_fan_in == 16
    assert settings(tmp_path, '[proxy]\nlr_fan_in = "none"\n').proxy.lr_fan_in is None
    with pytest.raises(ConfigError, match="proxy lr_fan_in \\(a channel count or 'none'\\) 0"):
        settings(tmp_path, "[proxy]\nlr_fan_in = 0\n")


def test_the_width_weights_are_0020_and_0008_by_default_and_must_be_numbers_at_least_zero(tmp_path: Path) -> None:
    proxy = Config().proxy
    assert (proxy.width_weight, proxy.frozen_width_weight, proxy.last_frozen_width_weight) == (0.020, 0.008, 0.008)
    for name in ("width_weight", "frozen_width_weight", "last_frozen_width_weight"):
        assert getattr(settings(tmp_path, f"[proxy]\n{name} = 0\n").proxy, name) == 0
        assert getattr(settings(tmp_path, f"[proxy]\n{name} = 0.05\n").proxy, name) == 0.05
        for bad in ('"auto"', "-0.01", "true", "inf"):
            with pytest.raises(ConfigError, match=f"proxy {name} .* must be a number >= 0"):
                settings(tmp_path, f"[proxy]\n{name} = {bad}\n")


def test_full_epochs_count_every_stage_and_replace_the_epochs_per_stage(tmp_path: Path) -> None:
    assert Config().full.total_epochs == 12 and Config().full.epochs is None  # 2 stages x 6 by default
    assert settings(tmp_path, "[full]\nepochs = 7\n").full.total_epochs == 7
    widening = settings(tmp_path, '[full]\nmode = "partial"\nstages = 3\nepochs = 8\n').full
    assert widening.stage_epochs() == (2, 3, 3) and widening.describe() == "partial widening, 2+3+3 epochs, cosine rate"
    assert Config().full.describe() == "from scratch, 12 epochs, cosine rate"
    with pytest.raises(ConfigError, match="full-training epochs 0"):
        settings(tmp_path, "[full]\nepochs = 0\n")
    with pytest.raises(ConfigError, match="full-training epochs 2 are fewer than the 3 widening stages"):
        settings(tmp_path, '[full]\nmode = "net2net"\nstages = 3\nepochs = 2\n')


def test_a_resumed_study_keeps_the_score_it_was_searched_with() -> None:
    old = json.dumps({"proxy": {"epochs": 3}, "space": {"layers": 4}})  # before width_weight: the accuracy alone
    resumed = study_config(Config(), old)
    assert (resumed.proxy.width_weight, resumed.proxy.frozen_width_weight) == (0.0, 0.0)
    assert resumed.proxy.epochs == 3 and resumed.space.layers == 4
    one_weight = json.dumps({"proxy": {"width_weight": 0.03}})  # before frozen_width_weight: one weight for all
    assert (study_config(Config(), one_weight).proxy.frozen_width_weight) == 0.03
    both = json.dumps({"proxy": {"width_weight": 0.03, "frozen_width_weight": 0.01}})  # before the last frozen's
    assert study_config(Config(), both).proxy.frozen_width_weight == 0.01
    assert study_config(Config(), both).proxy.last_frozen_width_weight == 0.01
    three = json.dumps({"proxy": {"width_weight": 0.03, "frozen_width_weight": 0.01, "last_frozen_width_weight": 0.0}})
    assert study_config(Config(), three).proxy.last_frozen_width_weight == 0.0


def test_texture_size_is_16_by_default_and_a_small_one_is_named(tmp_path: Path) -> None:
    assert Config().data.texture_size == 16
    assert settings(tmp_path, '[data]\ndataset = "textures"\ntexture_size = 28\n').data.texture_size == 28
    with pytest.raises(ConfigError, match="texture_size 3 must be an integer >= 4"):
        settings(tmp_path, '[data]\ndataset = "textures"\ntexture_size = 3\n')


def test_shapes_size_below_eight_is_named(tmp_path: Path) -> None:
    assert settings(tmp_path, '[data]\ndataset = "shapes"\nshapes_size = 28\n').data.shapes_size == 28
    with pytest.raises(ConfigError, match="shapes_size 6 must be an integer >= 8"):
        settings(tmp_path, '[data]\ndataset = "shapes"\nshapes_size = 6\n')
    with pytest.raises(ConfigError, match="shapes_train 0 is not a positive integer"):
        settings(tmp_path, '[data]\ndataset = "shapes"\nshapes_train = 0\n')


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[space]\nlayres = 4\n")
    with pytest.raises(ConfigError, match="'layres'"):
        from_mapping(load_toml(path))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (SpaceConfig(frozen_layers=(5,)), "frozen layers 5"),
        (SpaceConfig(width_choices=None, width_min=0), "width_min 0"),
        (SpaceConfig(layers=2, layer_choices=((8,),)), "layer_choices has 1"),
        (SpaceConfig(width_choices=None, width_min=64, width_max=8), "width_min 64"),
        (SpaceConfig(width_max=32), r"both width_choices \(4, 8, 16, 32, 64\) and a width range"),
    ],
)
def test_bad_space_is_named(space: SpaceConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config(space=space).validate()


def test_space_choices() -> None:
    assert SpaceConfig(width_choices=None, width_min=8, width_max=32, width_step=8).choices(0) == (8, 16, 24, 32)
    assert SpaceConfig(layers=2, layer_choices=((4,), (8, 16))).choices(1) == (8, 16)


def test_default_widths_are_doubling_choices_and_a_range_replaces_them() -> None:
    assert SpaceConfig().choices(0) == (4, 8, 16, 32, 64) and SpaceConfig().categorical
    ranged = from_mapping({"space": {"width_min": 8, "width_max": 24}}).validate()
    assert ranged.space.choices(2) == (8, 16, 24) and not ranged.space.categorical
    assert from_mapping({"space": {"width_choices": [16, 32]}}).space.choices(0) == (16, 32)
