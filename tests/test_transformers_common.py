"""transformers' own `ModelTesterMixin` (tests/test_modeling_common.py of the installed transformers, fetched from
its source distribution at test time: tests/transformers_sdist.py) against FrozenCaptioner with tiny towers.

The tester follows transformers' `TimesformerModelTester` and `OPTModelTester` (tests/models/{timesformer,opt}/).
"""

import logging
import os
import unittest
import unittest.mock

import pytest
import torch
import transformers_sdist
from transformers import OPTConfig, TimesformerConfig
from transformers.utils import logging as hf_logging
from transformers_sdist import TransformersTestsUnavailable, load_test_modeling_common

from modeling_frozencaptioner import FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration


try:
    common = load_test_modeling_common()
    _UNAVAILABLE = None
except TransformersTestsUnavailable as e:  # reported by the test below as a failure, never as a skip
    common, _UNAVAILABLE = None, e


def test_transformers_common_tests_available():
    """The sdist's tests were fetched and import; otherwise this fails with pip's output (and the mixin is absent)."""
    if _UNAVAILABLE is not None:
        pytest.fail(str(_UNAVAILABLE), pytrace=False)
    assert hasattr(common, "ModelTesterMixin")


def test_sdist_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    """No index reachable: `TransformersTestsUnavailable` naming the release and carrying pip's reason (the module
    turns it into the failing test above, never a skip); nothing half-downloaded is left in the cache."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index / find-links
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TransformersTestsUnavailable) as excinfo:
        transformers_sdist.download_sdist("5.24.0", tmp_path / "sdist")
    message = str(excinfo.value)
    assert "transformers==5.24.0 source distribution" in message and "pip said" in message
    assert "No matching distribution" in message or "Could not find a version" in message, message
    assert list((tmp_path / "sdist").iterdir()) == []


def test_damaged_sdist_is_dropped_from_the_cache(tmp_path):
    """A truncated tarball in the cache gives a clear error and is removed, so the next run downloads it again."""
    tarball = tmp_path / "sdist" / "transformers-5.24.0.tar.gz"
    tarball.parent.mkdir()
    tarball.write_bytes(b"\x1f\x8b\x08 not a tarball")
    with pytest.raises(TransformersTestsUnavailable, match="could not unpack"):
        transformers_sdist.extract_tests(tarball, "5.24.0", tmp_path / "tests")
    assert not tarball.exists()


def test_set_attn_implementation_reaches_every_config():
    """`set_attn_implementation` switches the composite config and both towers', without claiming it cannot (the
    mixin's own test stops early: TimeSformer cannot switch, it only has eager attention)."""
    model = FrozenCaptionerForConditionalGeneration(FrozenCaptionerModelTester(None).get_config())
    assert model.config.text_config._attn_implementation == "sdpa"
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    hf_logger = hf_logging.get_logger("transformers")  # does not propagate to pytest's caplog
    hf_logger.addHandler(handler)
    try:
        model.set_attn_implementation("eager")
    finally:
        hf_logger.removeHandler(handler)
    configs = (model.config, model.config.text_config, model.config.vision_config, model.language_model.config)
    assert [c._attn_implementation for c in configs] == ["eager"] * 4
    messages = [r.getMessage() for r in records]
    assert any("TimesformerModel does not support setting" in m for m in messages)  # the handler sees warnings
    assert not [m for m in messages if "FrozenCaptioner" in m], messages
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == model.config.text_config._attn_implementation == "sdpa"


class FrozenCaptionerVisionTester:
    """Image/video inputs alone, for the mixin's `get_image_features` / `get_video_features` tests (its
    `vision_model_tester` / `video_model_tester` hooks): our feature methods take `pixel_values` for both."""

    def __init__(self, parent, video: bool):
        self.parent, self.video = parent, video
        self.batch_size = parent.batch_size
        self.num_hidden_layers = parent.vision_num_hidden_layers

    def prepare_config_and_inputs_for_common(self):
        config, inputs = self.parent.prepare_config_and_inputs_for_common()
        pixel_values = inputs["pixel_values"] if self.video else inputs["pixel_values"][:, 0]  # (B, 3, H, W)
        return config, {"pixel_values": pixel_values}


class FrozenCaptionerModelTester:
    """Tiny configs and inputs for the mixin: pixel_values (B, T, 3, H, W), input_ids / attention_mask (B, S)."""

    def __init__(
        self,
        parent,
        batch_size=3,
        seq_length=7,
        is_training=True,
        # TimesformerModelTester's values
        image_size=10,
        patch_size=2,
        num_channels=3,
        num_frames=2,
        vision_hidden_size=32,
        vision_num_hidden_layers=2,
        vision_num_attention_heads=4,
        vision_intermediate_size=37,
        # OPTModelTester's values
        vocab_size=99,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=4,
        max_position_embeddings=20,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        # one adapter, before the last decoder layer: layer 0 runs below it, without autograd (the paper's layout)
        adapter_layers=(1,),
        freeze_towers=True,  # the model's default: frozen TimeSformer and OPT
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.num_frames = num_frames
        self.vision_hidden_size = vision_hidden_size
        self.vision_num_hidden_layers = vision_num_hidden_layers
        self.vision_num_attention_heads = vision_num_attention_heads
        self.vision_intermediate_size = vision_intermediate_size
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.ffn_dim = ffn_dim
        self.max_position_embeddings = max_position_embeddings
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.adapter_layers = list(adapter_layers)
        self.freeze_towers = freeze_towers
        self.vision_model_tester = FrozenCaptionerVisionTester(self, video=False)
        self.video_model_tester = FrozenCaptionerVisionTester(self, video=True)

    def get_config(self) -> FrozenCaptionerConfig:
        vision_config = TimesformerConfig(
            image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels,
            num_frames=self.num_frames, hidden_size=self.vision_hidden_size,
            num_hidden_layers=self.vision_num_hidden_layers, num_attention_heads=self.vision_num_attention_heads,
            intermediate_size=self.vision_intermediate_size, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )  # fmt: skip
        text_config = OPTConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, ffn_dim=self.ffn_dim,
            max_position_embeddings=self.max_position_embeddings, word_embed_proj_dim=self.hidden_size,
            dropout=0.0, attention_dropout=0.0, pad_token_id=self.pad_token_id, bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
        )  # fmt: skip
        return FrozenCaptionerConfig(
            vision_config=vision_config, text_config=text_config, adapter_layers=self.adapter_layers,
            freeze_vision_model=self.freeze_towers, freeze_language_model=self.freeze_towers,
        )  # fmt: skip

    def prepare_config_and_inputs(self):
        pixel_values = common.floats_tensor(
            [self.batch_size, self.num_frames, self.num_channels, self.image_size, self.image_size]
        )  # (B, T, 3, H, W)
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id  # OPTModelTester: eos last, no pad inside
        attention_mask = input_ids.ne(self.pad_token_id).long()
        return self.get_config(), pixel_values, input_ids, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, input_ids, attention_mask = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask}


if common is not None:

    class FrozenCaptionerModelTest(common.ModelTesterMixin, unittest.TestCase):
        all_model_classes = (FrozenCaptionerForConditionalGeneration,)
        # transformers' generate tests (tests/generation/test_utils.py) are not in the sdist, so the tester cannot run
        # them; ours are in tests/test_generation.py. `()` makes the mixin check that we do not claim to run them.
        all_generative_model_classes = ()
        # The main input is the video; the eager/sdpa comparison also needs the text.
        additional_model_inputs = ["input_ids"]
        _is_composite = True  # TimeSformer + OPT sub-configs
        # Not overridden on purpose: the mixin checks the `pooler_output` layout of get_{image,video}_features only
        # for classes in transformers' own image-text-to-text name table (generate()'s `mm_encoder_outputs` beam
        # expansion relies on it). Ours is not in that table; its `pooler_output` is TimeSformer's CLS token, and its
        # forward takes no `mm_encoder_outputs` (generate() passes the adapters' K/V, batch-first, instead).

        def setUp(self):
            self.model_tester = FrozenCaptionerModelTester(self)
            torch.manual_seed(0)

        def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
            # The mixin adds LM labels only for classes in transformers' own causal-LM / image-text-to-text name
            # tables; ours is registered at run time (AutoModelForImageTextToText), so add them the same way.
            inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
            if return_labels:
                inputs_dict["labels"] = inputs_dict["input_ids"].clone()
            return inputs_dict

        def _prepare_config_and_inputs_for_retain_grad_hidden_states_attentions(self):
            # With the language model frozen (the default), the layers below the first adapter run without autograd
            # by design, so their hidden states / attentions have no graph to retain a gradient in; the test runs
            # with trainable towers, where they do.
            self.model_tester.freeze_towers = False
            return self.model_tester.prepare_config_and_inputs_for_common()

        def check_training_gradient_checkpointing(self, gradient_checkpointing_kwargs=None):
            # The mixin "unfreezes" with `requires_grad_(True)` and expects every layer to checkpoint. In this model
            # freezing is a config property: frozen towers also stay in eval mode under `train()` (no dropout, no
            # checkpointing of their own; the adapters and the upper decoder layers are checkpointed, see
            # tests/test_modeling.py). So the mixin's check runs on the unfrozen configuration.
            self.model_tester.freeze_towers = False
            super().check_training_gradient_checkpointing(gradient_checkpointing_kwargs)

        def test_causal_lm_loss_honors_shift_labels(self):
            # The mixin finds decoder LM heads by name in transformers' own causal-LM / image-text-to-text tables;
            # ours is an image-text-to-text head registered at run time (auto_map), so name it there for this test.
            names = common.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            with unittest.mock.patch.dict(
                names, {"frozencaptioner": FrozenCaptionerForConditionalGeneration.__name__}
            ):
                super().test_causal_lm_loss_honors_shift_labels()

        def test_model_forward_default_config_values(self):
            # Run for classes in transformers' base-model name table only; ours is also mapped to `AutoModel`
            # (auto_map), so name it there for this test.
            names = common.MODEL_MAPPING_NAMES
            with unittest.mock.patch.dict(
                names, {"frozencaptioner": FrozenCaptionerForConditionalGeneration.__name__}
            ):
                super().test_model_forward_default_config_values()

        def test_enable_input_require_grads_with_gradient_checkpointing(self):
            # The mixin needs a gradient on the input-embedding weights, which a frozen language model never gets (it
            # would skip); run it on the unfrozen configuration.
            self.model_tester.freeze_towers = False
            super().test_enable_input_require_grads_with_gradient_checkpointing()
