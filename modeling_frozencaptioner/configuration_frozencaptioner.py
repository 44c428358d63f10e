# Copyright 2026 The FrozenCaptioner authors. Licensed under the Apache License, Version 2.0.
"""FrozenCaptioner configuration: a TimeSformer `vision_config`, an OPT `text_config` and the adapter fields.

No `from __future__ import annotations` here: transformers 5 reads config annotations at run time.

This module is imported by everything in the folder, so it also holds the tested transformers range: importing the
remote code with a transformers outside it logs one warning (users of a Hub repo run these files on whatever version
they have installed).
"""

import transformers
from packaging.specifiers import SpecifierSet
from transformers import CONFIG_MAPPING, AutoConfig, PreTrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)
# The version warning goes through transformers' own logger tree (its handler, format and verbosity settings) under a
# fixed name: the Auto classes import this file under a different `transformers_modules.<hash>` package each
# (config alone, model, processor), so a module-level "once" would fire up to three times; `warning_once` keyed on
# this one logger fires once per process.
_version_logger = logging.get_logger("transformers.frozencaptioner")

# The transformers releases this folder is tested with (.ci/run tests both ends); equal to pyproject's specifier.
TESTED_TRANSFORMERS = ">=5.23,<5.25"


def _warn_if_untested_transformers(installed: str | None = None) -> bool:
    """Log one warning when the installed transformers is outside `TESTED_TRANSFORMERS`; True if inside."""
    installed = installed or transformers.__version__
    if SpecifierSet(TESTED_TRANSFORMERS).contains(installed, prereleases=True):
        return True
    _version_logger.warning_once(
        f"FrozenCaptioner's remote code is tested with transformers{TESTED_TRANSFORMERS}, but transformers "
        f"{installed} is installed; it may not work. Install a tested version: pip install "
        f"'transformers{TESTED_TRANSFORMERS}'"
    )
    return False


_warn_if_untested_transformers()


_CROSS_ATTENTION_TYPES = ("separable", "full")
_GATE_TYPES = ("vector", "scalar")


class FrozenCaptionerConfig(PreTrainedConfig):
    r"""
    Configuration of a [`FrozenCaptionerForConditionalGeneration`]: a frozen TimeSformer video encoder, a frozen OPT
    decoder and trainable gated cross-attention adapters inserted before some decoder layers (Lialin et al., WACV 2023
    Workshops, "Scalable and Accurate Self-supervised Multimodal Representation Learning without Aligned Video and Text
    Data").

    Args:
        vision_config (`TimesformerConfig` or `dict`, *optional*):
            The video encoder. Its `num_frames` is the largest number of frames the model accepts (the tower's time
            embeddings are learned for that many); fewer frames (1 = an image) are fine.
        text_config (`OPTConfig` or `dict`, *optional*):
            The language decoder.
        adapter_layers (`list[int]`, *optional*):
            Decoder layer indices; the adapter with list position `i` runs just before decoder layer
            `adapter_layers[i]`. Defaults to every other layer of the upper half (OPT-1.3B: 12, 14, ..., 22, the paper).
        cross_attention (`str`, *optional*, defaults to `"separable"`):
            `"separable"`: the paper's separable cross-attention, cost O(q(t+s)); `"full"`: attend over all t*s video
            tokens, cost O(q t s) (the ablation baseline).
        gate_type (`str`, *optional*, defaults to `"vector"`):
            `"vector"` (one gate per hidden dimension, the paper) or `"scalar"` (Flamingo).
        gate_init (`float`, *optional*, defaults to 1.0):
            Pre-tanh gate value: 1.0 gives tanh(1)=0.76 (the paper's choice), 0.0 gives Flamingo's tanh(0)=0, where
            the untrained model is exactly the frozen language model.
        adapter_hidden_size (`int`, *optional*):
            Inner width of each cross-attention branch; defaults to the text hidden size.
        adapter_num_heads (`int`, *optional*):
            Attention heads of the adapters; defaults to the text model's.
        adapter_ffn_multiplier (`int`, *optional*, defaults to 4):
            The adapter feed-forward block is `hidden -> multiplier * hidden -> hidden`.
        adapter_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the adapter attention probabilities and FFN output.
        freeze_vision_model (`bool`, *optional*, defaults to `True`):
            Keep the video encoder frozen (no grad, eval mode under `model.train()`).
        freeze_language_model (`bool`, *optional*, defaults to `True`):
            Keep the language model frozen (no grad, eval mode; layers below the first adapter run without autograd).

    Example:

    ```python
    >>> from transformers import OPTConfig, TimesformerConfig
    >>> from modeling_frozencaptioner import FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration

    >>> config = FrozenCaptionerConfig(vision_config=TimesformerConfig(), text_config=OPTConfig(num_hidden_layers=24))
    >>> model = FrozenCaptionerForConditionalGeneration(config)
    ```"""

    model_type = "frozencaptioner"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config=None,
        text_config=None,
        adapter_layers=None,
        cross_attention="separable",
        gate_type="vector",
        gate_init=1.0,
        adapter_hidden_size=None,
        adapter_num_heads=None,
        adapter_ffn_multiplier=4,
        adapter_dropout=0.0,
        freeze_vision_model=True,
        freeze_language_model=True,
        **kwargs,
    ):
        self.vision_config = self._typed_sub_config(vision_config, "timesformer")
        self.text_config = self._typed_sub_config(text_config, "opt")

        num_text_layers = self.text_config.num_hidden_layers
        if adapter_layers is None:
            adapter_layers = list(range(num_text_layers // 2, num_text_layers, 2))
        adapter_layers = [int(i) for i in adapter_layers]
        bad = [i for i in adapter_layers if not 0 <= i < num_text_layers]
        if bad:
            raise ValueError(
                f"adapter_layers {bad} out of range: the text model has {num_text_layers} layers (valid 0..{num_text_layers - 1})"
            )
        if len(set(adapter_layers)) != len(adapter_layers):
            raise ValueError(f"adapter_layers has duplicates: {adapter_layers}")
        if not adapter_layers:
            raise ValueError("adapter_layers is empty: the video would never reach the language model")
        if cross_attention not in _CROSS_ATTENTION_TYPES:
            raise ValueError(f"cross_attention must be one of {_CROSS_ATTENTION_TYPES}, got {cross_attention!r}")
        if gate_type not in _GATE_TYPES:
            raise ValueError(f"gate_type must be one of {_GATE_TYPES}, got {gate_type!r}")

        self.adapter_layers = sorted(adapter_layers)
        self.cross_attention = cross_attention
        self.gate_type = gate_type
        self.gate_init = float(gate_init)
        self.adapter_hidden_size = int(adapter_hidden_size or self.text_config.hidden_size)
        self.adapter_num_heads = int(adapter_num_heads or self.text_config.num_attention_heads)
        if self.adapter_hidden_size % self.adapter_num_heads:
            raise ValueError(
                f"adapter_hidden_size ({self.adapter_hidden_size}) must be divisible by adapter_num_heads ({self.adapter_num_heads})"
            )
        if int(adapter_ffn_multiplier) < 1:
            raise ValueError(f"adapter_ffn_multiplier must be >= 1, got {adapter_ffn_multiplier}")
        self.adapter_ffn_multiplier = int(adapter_ffn_multiplier)
        if not 0.0 <= float(adapter_dropout) < 1.0:
            raise ValueError(f"adapter_dropout must be in [0, 1), got {adapter_dropout}")
        self.adapter_dropout = float(adapter_dropout)
        self.freeze_vision_model = bool(freeze_vision_model)
        self.freeze_language_model = bool(freeze_language_model)

        if self.vision_config.attention_type != "divided_space_time":
            raise ValueError(
                f"vision_config.attention_type must be 'divided_space_time' (TimeSformer divST), got {self.vision_config.attention_type!r}"
            )
        if not isinstance(self.vision_config.image_size, int):
            raise ValueError(
                f"vision_config.image_size must be an int (square crops), got {self.vision_config.image_size!r}"
            )

        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            kwargs.setdefault(key, getattr(self.text_config, key, None))
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", True))
        # PreTrainedConfig.__init__ sets `_attn_implementation` (None unless given) recursively on the sub-configs; keep
        # the implementation of typed sub-configs that already have one (towers loaded by from_pretrained_backbones).
        sub_attn = {key: getattr(self, key)._attn_implementation for key in self.sub_configs}
        explicit_attn = "attn_implementation" in kwargs
        super().__init__(**kwargs)
        for key, implementation in sub_attn.items():
            if implementation is not None and not explicit_attn:
                getattr(self, key)._attn_implementation = implementation

    @staticmethod
    def _typed_sub_config(sub_config, default_model_type):
        """A sub-config as its typed class (Llava's pattern): a dict goes through `CONFIG_MAPPING[model_type]`."""
        if sub_config is None:
            return CONFIG_MAPPING[default_model_type]()
        if isinstance(sub_config, dict):
            sub_config = dict(sub_config)
            model_type = sub_config.pop("model_type", default_model_type)
            if model_type != default_model_type:
                raise ValueError(f"expected a {default_model_type!r} sub-config, got model_type={model_type!r}")
            return CONFIG_MAPPING[model_type](**sub_config)
        if isinstance(sub_config, PreTrainedConfig):
            if sub_config.model_type != default_model_type:
                raise ValueError(f"expected a {default_model_type!r} sub-config, got {type(sub_config).__name__}")
            return sub_config
        raise ValueError(f"sub-config must be a dict or a PreTrainedConfig, got {type(sub_config).__name__}")

    @property
    def num_frames(self) -> int:
        """Largest number of frames per clip (the vision tower's learned time embeddings)."""
        return self.vision_config.num_frames

    @property
    def image_size(self) -> int:
        return self.vision_config.image_size


# `save_pretrained` writes `auto_map["AutoConfig"]` and copies this file (the Hub remote-code format).
FrozenCaptionerConfig.register_for_auto_class()

__all__ = ["FrozenCaptionerConfig", "TESTED_TRANSFORMERS"]
