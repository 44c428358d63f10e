# Copyright 2026 The FrozenCaptioner authors. Licensed under the Apache License, Version 2.0.
"""FrozenCaptioner configuration: a `vision_config` (a TimeSformer, or an image tower applied per frame), an OPT
`text_config` and the adapter fields.

No `from __future__ import annotations` here: transformers 5 reads config annotations at run time.

This module is imported by everything in the folder, so it also holds the tested transformers range: importing the
remote code with a transformers outside it logs one warning (users of a Hub repo run these files on whatever version
they have installed).
"""

import transformers
from packaging.specifiers import SpecifierSet
from transformers import CONFIG_MAPPING, AutoConfig, PreTrainedConfig
from transformers.utils import is_timm_available, logging


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


def import_timm():
    """`timm`, for timm towers only. The import sits in an `if is_timm_available():` block: transformers' remote-code
    loader skips those when it lists the packages a file needs, so loading this folder never requires timm."""
    if is_timm_available():
        import timm
        import timm.data

        return timm
    raise ImportError("this vision tower is a timm model (TimmWrapperConfig): pip install timm")


_CROSS_ATTENTION_TYPES = ("separable", "full")
_GATE_TYPES = ("vector", "scalar")
# Vision towers: TimeSformer (a video model, tokens `[CLS] + (h w t)`), or an image encoder run on every frame.
_VIDEO_TOWER_TYPES = ("timesformer",)
_FRAME_WISE_TOWER_TYPES = ("clip_vision_model", "siglip_vision_model", "timm_wrapper")
# Full two-tower configs whose image tower is used alone (`CLIPModel.save_pretrained` writes model_type "clip").
_FULL_MODEL_VISION_KEYS = {"clip": "vision_config", "siglip": "vision_config"}
# The adapters' LayerNorm eps on the visual tokens, for towers whose config has no `layer_norm_eps` (timm).
_DEFAULT_VISION_LAYER_NORM_EPS = 1e-6


class FrozenCaptionerConfig(PreTrainedConfig):
    r"""
    Configuration of a [`FrozenCaptionerForConditionalGeneration`]: a frozen vision tower (the paper's TimeSformer, or
    an image encoder applied to every frame), a frozen OPT decoder and trainable gated cross-attention adapters
    inserted before some decoder layers (Lialin et al., WACV 2023 Workshops, "Scalable and Accurate Self-supervised
    Multimodal Representation Learning without Aligned Video and Text Data").

    Args:
        vision_config (`PreTrainedConfig` or `dict`, *optional*):
            The vision tower: a `TimesformerConfig` (the paper), or a frame-wise image tower: `CLIPVisionConfig`,
            `SiglipVisionConfig` or `TimmWrapperConfig` (any timm ViT or CNN). A full `CLIPConfig` / `SiglipConfig`
            (model_type "clip" / "siglip") contributes only its `vision_config`.
        max_num_frames (`int`, *optional*):
            The largest number of frames per clip; fewer (1 = an image) are fine. TimeSformer: defaults to (and may
            not exceed) `vision_config.num_frames`, the frames its time embeddings are learned for. Frame-wise towers:
            defaults to 8; it sizes the adapters' trainable time embeddings.
        vision_hidden_size (`int`, *optional*):
            Width of the tower's tokens. Read off the tower's config (`hidden_size`; timm: `num_features`, or the
            architecture built on the meta device); pass it only to check.
        time_embedding_init_std (`float`, *optional*, defaults to 0.5):
            Frame-wise towers only: std of the truncated-normal init of the adapters' trainable time embeddings, which
            are added to LayerNorm'ed (unit-scale) tokens. 0 = zeros: the step-0 model is then exactly blind to frame
            order (they still train, but start slower; see `FrozenCaptionerPreTrainedModel._init_weights`).
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
        max_num_frames=None,
        vision_hidden_size=None,
        time_embedding_init_std=0.5,
        **kwargs,
    ):
        self.vision_config = self._typed_vision_config(vision_config)
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

        if self.frame_wise_vision:
            max_num_frames = 8 if max_num_frames is None else max_num_frames
        else:
            if self.vision_config.attention_type != "divided_space_time":
                raise ValueError(
                    f"vision_config.attention_type must be 'divided_space_time' (TimeSformer divST), got {self.vision_config.attention_type!r}"
                )
            if not isinstance(self.vision_config.image_size, int):
                raise ValueError(
                    f"vision_config.image_size must be an int (square crops), got {self.vision_config.image_size!r}"
                )
            tower_frames = self.vision_config.num_frames
            max_num_frames = tower_frames if max_num_frames is None else max_num_frames
            if int(max_num_frames) > tower_frames:
                raise ValueError(
                    f"max_num_frames={max_num_frames} exceeds the TimeSformer's num_frames={tower_frames} (its time "
                    "embeddings are learned for that many frames)"
                )
        if int(max_num_frames) < 1:
            raise ValueError(f"max_num_frames must be >= 1, got {max_num_frames}")
        self.max_num_frames = int(max_num_frames)
        # a given width (e.g. from config.json) is checked where that is cheap; a timm architecture is built (on the
        # meta device) only when the width is not known
        tower_width = self._vision_width(self.vision_config, build=vision_hidden_size is None)
        if vision_hidden_size is not None and tower_width is not None and int(vision_hidden_size) != tower_width:
            raise ValueError(f"vision_hidden_size={vision_hidden_size} but the vision tower's width is {tower_width}")
        self.vision_hidden_size = int(vision_hidden_size if vision_hidden_size is not None else tower_width)
        if float(time_embedding_init_std) < 0:
            raise ValueError(f"time_embedding_init_std must be >= 0, got {time_embedding_init_std}")
        self.time_embedding_init_std = float(time_embedding_init_std)

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

    @classmethod
    def _typed_vision_config(cls, vision_config):
        """The vision sub-config, typed: a TimeSformer or a frame-wise tower; a full CLIP/SigLIP config gives its
        vision tower's config."""
        allowed = _VIDEO_TOWER_TYPES + _FRAME_WISE_TOWER_TYPES
        if isinstance(vision_config, dict) and vision_config.get("model_type") in _FULL_MODEL_VISION_KEYS:
            vision_config = CONFIG_MAPPING[vision_config["model_type"]].from_dict(vision_config)
        if isinstance(vision_config, PreTrainedConfig) and vision_config.model_type in _FULL_MODEL_VISION_KEYS:
            vision_config = getattr(vision_config, _FULL_MODEL_VISION_KEYS[vision_config.model_type])
        model_type = (
            vision_config.get("model_type", "timesformer")
            if isinstance(vision_config, dict)
            else getattr(vision_config, "model_type", "timesformer")
        )
        if model_type not in allowed:
            raise ValueError(
                f"expected a 'timesformer' vision sub-config or a frame-wise image tower ({', '.join(_FRAME_WISE_TOWER_TYPES)}; "
                f"a full {' / '.join(_FULL_MODEL_VISION_KEYS)} config gives its vision_config), got model_type={model_type!r}"
            )
        if model_type == "timesformer":
            return cls._typed_sub_config(vision_config, "timesformer")
        if isinstance(vision_config, dict):
            # `from_dict`: timm's config maps its saved `num_classes` / `label_names` back to transformers' fields
            return CONFIG_MAPPING[model_type].from_dict(vision_config)
        return vision_config

    @staticmethod
    def _vision_width(vision_config, build: bool = True) -> int | None:
        """Width of the tower's output tokens: `hidden_size`, or a timm model's `num_features` (from its saved config,
        else, with `build`, from the architecture built on the meta device: no weights are allocated)."""
        if vision_config.model_type != "timm_wrapper":
            return vision_config.hidden_size
        if getattr(vision_config, "num_features", None):
            return int(vision_config.num_features)
        if not build:
            return None
        import torch

        timm = import_timm()
        model_args = {k: v for k, v in (vision_config.model_args or {}).items() if k != "num_classes"}
        with torch.device("meta"):
            model = timm.create_model(vision_config.architecture, pretrained=False, num_classes=0, **model_args)
        return int(model.num_features)

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
    def frame_wise_vision(self) -> bool:
        """True when the vision tower is an image encoder run on every frame (not a TimeSformer)."""
        return self.vision_config.model_type in _FRAME_WISE_TOWER_TYPES

    @property
    def num_frames(self) -> int:
        """Largest number of frames per clip (`max_num_frames`)."""
        return self.max_num_frames

    @property
    def image_size(self) -> int | None:
        """The tower's native square crop (timm: its `pretrained_cfg` input size, or `model_args["img_size"]`)."""
        vc = self.vision_config
        if vc.model_type != "timm_wrapper":
            size = vc.image_size
        else:
            input_size = (getattr(vc, "pretrained_cfg", None) or {}).get("input_size")
            size = input_size[-1] if input_size else (vc.model_args or {}).get("img_size")
        return size[-1] if isinstance(size, (list, tuple)) else size

    @property
    def vision_layer_norm_eps(self) -> float:
        """eps of the adapters' LayerNorms on visual tokens: the tower's own (timm: 1e-6)."""
        return getattr(self.vision_config, "layer_norm_eps", _DEFAULT_VISION_LAYER_NORM_EPS)


# `save_pretrained` writes `auto_map["AutoConfig"]` and copies this file (the Hub remote-code format).
FrozenCaptionerConfig.register_for_auto_class()

__all__ = ["FrozenCaptionerConfig", "TESTED_TRANSFORMERS"]
