"""FrozenCaptionerConfig: nested typed sub-configs, round trips, validation."""

import pytest
from transformers import AutoConfig, OPTConfig, TimesformerConfig

from frozencaptioner.tiny import tiny_config
from modeling_frozencaptioner import FrozenCaptionerConfig


def test_round_trip_keeps_typed_sub_configs(tmp_path):
    config = tiny_config(gate_type="scalar", gate_init=0.0, cross_attention="full")
    config.save_pretrained(tmp_path)
    loaded = FrozenCaptionerConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.vision_config, TimesformerConfig)
    assert isinstance(loaded.text_config, OPTConfig)
    assert loaded.to_dict() == config.to_dict()
    assert (loaded.gate_type, loaded.gate_init, loaded.cross_attention) == ("scalar", 0.0, "full")
    assert loaded.get_text_config() is loaded.text_config
    # the local auto registration resolves the model type
    assert type(AutoConfig.from_pretrained(tmp_path)) is FrozenCaptionerConfig


def test_dict_sub_configs_and_defaults():
    config = FrozenCaptionerConfig(
        vision_config={"model_type": "timesformer", "num_frames": 2},
        text_config={"num_hidden_layers": 24, "hidden_size": 64, "num_attention_heads": 4},
    )
    assert config.vision_config.num_frames == 2
    assert config.adapter_layers == [12, 14, 16, 18, 20, 22]  # the paper's layers for a 24-layer OPT
    assert config.adapter_hidden_size == 64 and config.adapter_num_heads == 4
    assert config.gate_type == "vector" and config.gate_init == 1.0
    assert config.bos_token_id == config.eos_token_id == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"adapter_layers": [1, 4]}, "out of range"),
        ({"adapter_layers": [-1]}, "out of range"),
        ({"adapter_layers": [1, 1]}, "duplicates"),
        ({"adapter_layers": []}, "empty"),
        ({"cross_attention": "axial"}, "cross_attention"),
        ({"gate_type": "matrix"}, "gate_type"),
        ({"adapter_hidden_size": 30}, "divisible"),
        ({"adapter_ffn_multiplier": 0}, "adapter_ffn_multiplier"),
        ({"adapter_dropout": 1.5}, "adapter_dropout"),
    ],
)
def test_bad_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_wrong_sub_config_types_raise():
    with pytest.raises(ValueError, match="opt"):
        FrozenCaptionerConfig(text_config={"model_type": "gpt2"})
    with pytest.raises(ValueError, match="timesformer"):
        FrozenCaptionerConfig(vision_config=OPTConfig())
    with pytest.raises(ValueError, match="divided_space_time"):
        FrozenCaptionerConfig(vision_config=TimesformerConfig(attention_type="space_only"))
