"""The shipped run configs parse and carry the paper's settings; launch configs are consistent."""

import json
import os

import pytest
import yaml

from train.train import parse_args


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "configs")


def _args(name, *extra):
    return parse_args(["--config", os.path.join(CONFIGS, f"{name}.yaml"), *extra])


def test_pretrain_mix_follows_the_paper():
    args = _args("pretrain_mix")
    assert args.text_model_name_or_path == "facebook/opt-1.3b" and "timesformer" in args.vision_model_name_or_path
    assert args.adapter_layers == [12, 14, 16, 18, 20, 22]
    assert args.p_image == 0.95 and args.modality_sampling == "independent"
    assert args.image_batch_size == 8 * args.video_batch_size
    assert args.adam_beta2 == 0.999 and args.gate_type == "vector" and args.gate_init == 1.0
    assert args.max_train_steps == 40000 and args.image_size == 224
    assert 1000 <= args.image_batch_size * args.gradient_accumulation_steps * 8 <= 1400  # ~1.2K on 8 GPUs
    assert args.modality_draw == "per_step"  # each GPU draws its modality per step (METHOD.md 3)
    assert (
        args.shuffle_buffer_mb and args.shuffle_buffer_mb * args.dataloader_num_workers * 2 * 8 <= 64 * 1024
    )  # MiB/node


@pytest.mark.parametrize(
    "name, p_image", [("pretrain_asr_only", 0.0), ("pretrain_pseudolabels_only", 0.0), ("pretrain_laion_only", 1.0)]
)
def test_table1_ablations(name, p_image):
    args = _args(name)
    assert args.p_image == p_image and args.max_train_steps == 4000
    assert (args.image_train_files is None) == (p_image == 0.0)
    assert (args.video_train_files is None) == (p_image == 1.0)


@pytest.mark.parametrize("name", ["finetune_msrvtt", "finetune_msvd"])
def test_finetune_at_320(name):
    args = _args(name)
    assert args.image_size == 320 and args.p_image == 0.0 and args.model_name_or_path


def test_command_line_overrides_config_and_unknown_keys_fail(tmp_path):
    args = _args("pretrain_mix", "--adam_beta2", "0.95", "--modality_sampling", "synchronized")
    assert args.adam_beta2 == 0.95 and args.modality_sampling == "synchronized"
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1.0\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_args(["--config", str(bad)])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_deepspeed_configs(precision):
    with open(os.path.join(CONFIGS, f"accelerate_deepspeed_zero2_{precision}.yaml")) as f:
        launch = yaml.safe_load(f)
    assert launch["distributed_type"] == "DEEPSPEED"
    ds_file = launch["deepspeed_config"]["deepspeed_config_file"]
    with open(os.path.join(os.path.dirname(CONFIGS), "..", ds_file)) as f:
        ds = json.load(f)
    assert ds["zero_optimization"]["stage"] == 2
    assert ds[precision]["enabled"] is True and ds["bf16" if precision == "fp16" else "fp16"]["enabled"] is False
    assert ds["optimizer"]["params"]["lr"] == "auto" and ds["train_micro_batch_size_per_gpu"] == "auto"
    assert "scheduler" not in ds  # train.py hands DeepSpeed the DDP schedule (a json scheduler is refused)
    with open(os.path.join(CONFIGS, "accelerate_ddp.yaml")) as f:
        assert yaml.safe_load(f)["distributed_type"] == "MULTI_GPU"
