# Copyright 2026 The FrozenCaptioner authors. Licensed under the Apache License, Version 2.0.
"""FrozenCaptioner: a frozen vision tower + frozen OPT joined by gated separable cross-attention adapters.

Lialin et al., "Scalable and Accurate Self-supervised Multimodal Representation Learning without Aligned Video and
Text Data", WACV 2023 Workshops. The vision tower is the paper's TimeSformer or an image encoder applied to every frame
(CLIP / SigLIP vision towers, any timm model through transformers' `TimmWrapperModel`). This file imports only
`torch`, `transformers` and its sibling configuration file, so the folder can be copied into a Hub repository as is
and loaded with `trust_remote_code=True` (transformers imports `timm` itself, and only for a timm tower).
"""

import contextlib
import copy
import dataclasses
import inspect
import threading
import weakref
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.models.opt.modeling_opt import OPTDecoderLayer
from transformers.models.timesformer.modeling_timesformer import TimesformerEmbeddings
from transformers.utils import logging
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_frozencaptioner import FrozenCaptionerConfig


logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------- cross-version names
# transformers 5.24 renamed the self-attention cache `past_key_values` -> `cache` in ModelOutput fields, forward
# signatures, generate()'s model kwargs and `create_causal_mask` (old names are deprecated aliases until 5.40). The
# names are read off the installed library's own signatures, so no call of ours goes through a deprecation shim.
def _cache_name(fn) -> str:
    """The keyword under which `fn` takes the KV cache in the installed transformers."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


_OUTPUT_CACHE_FIELD = (
    "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
)
_LAYER_CACHE_KWARG = _cache_name(OPTDecoderLayer.forward)
_MASK_CACHE_KWARG = _cache_name(create_causal_mask)


def _deprecate_past_key_values(forward):
    """From 5.24, `forward(past_key_values=...)` warns and is read as `cache`, with the library's own decorator and
    message (as its models do: `@deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")`); up to 5.23
    `past_key_values` is the current name (what `generate()` passes), so nothing is wrapped there."""
    if _OUTPUT_CACHE_FIELD != "cache":
        return forward
    return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache", raise_if_both_names=True)(forward)


@dataclass
class FrozenCaptionerCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    Output of [`FrozenCaptionerForConditionalGeneration`]: transformers' `CausalLMOutputWithPast` (so its cache field
    is `past_key_values` up to 5.23 and `cache` from 5.24, whichever the installed version uses) plus the video
    tower's output; the fields follow `IdeficsCausalLMOutputWithPast`.

    Args:
        loss (`torch.FloatTensor` of shape `(1,)`, *optional*): language-modelling loss (labels `-100` ignored).
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`).
        cache / past_key_values (`Cache`, *optional*): the decoder's self-attention cache (the installed version's
            name).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): input of every decoder layer (after its adapter, if
            any) plus the final output, with `output_hidden_states=True`; with a list of indices, the others are None.
        attentions (`tuple(torch.FloatTensor)`, *optional*): decoder self-attention weights, with
            `output_attentions=True` (needs `attn_implementation="eager"`).
        video_hidden_states (`torch.FloatTensor`, *optional*): the vision tower's output, when it ran in this call
            (`get_video_features(...).last_hidden_state`): TimeSformer `(batch_size, 1 + patches * frames,
            vision_hidden)`, frame-wise towers `(batch_size, frames, patches, vision_hidden)`.
    """

    video_hidden_states: torch.FloatTensor | None = None


# Adapted from transformers.utils.output_capturing.{selected,resolve}_hidden_states(_indices) (v5.23, same in v5.24):
# our explicit decoder loop collects the hidden states itself, so it reads `output_hidden_states` the same way.
def _selected_hidden_states(output_hidden_states, num_hidden_states: int) -> set[int] | None:
    """None (keep all) for a flag; else the kept indices of an int or list of ints (negative ones count from the end,
    out-of-range ones select nothing)."""
    if isinstance(output_hidden_states, bool) or output_hidden_states is None:
        return None
    selected = [output_hidden_states] if isinstance(output_hidden_states, int) else list(output_hidden_states)
    return {i % num_hidden_states for i in selected if -num_hidden_states <= i < num_hidden_states}


class _GeometryGate:
    """Serialises calls into one vision tower that need different geometries (frames, crop).

    HF TimeSformer layers read the geometry off their config during the forward, so a call with another frame count or
    crop must change the (shared) config for its duration. Calls with the geometry that is currently set run
    concurrently; a call with another geometry waits until the tower is free (same-geometry newcomers then queue behind
    it, so it is not starved).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._geometry, self._saved, self._users, self._pending = None, None, 0, 0

    @contextlib.contextmanager
    def hold(self, geometry, apply, restore):
        with self._cond:
            queued = False
            while self._users and (self._geometry != geometry or (self._pending and not queued)):
                if not queued and self._geometry != geometry:
                    self._pending, queued = self._pending + 1, True
                self._cond.wait()
            if queued:
                self._pending -= 1
            if self._users == 0:
                self._geometry, self._saved = geometry, apply(geometry)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    restore(self._saved)
                    self._geometry, self._saved = None, None
                    self._cond.notify_all()


_GEOMETRY_GATES: dict[int, _GeometryGate] = {}  # id(vision config) -> gate; entries die with their config
_GEOMETRY_GATES_LOCK = threading.Lock()


def _geometry_gate(config) -> _GeometryGate:
    with _GEOMETRY_GATES_LOCK:
        key = id(config)
        if key not in _GEOMETRY_GATES:
            _GEOMETRY_GATES[key] = _GeometryGate()
            weakref.finalize(config, _GEOMETRY_GATES.pop, key, None)
        return _GEOMETRY_GATES[key]


def _multihead_attention(query, keys, values, num_heads, dropout):
    """query [B, q, inner], keys/values [B, L, inner] -> [B, q, inner]; softmax over the L visual tokens."""
    batch, q_len, inner = query.shape
    head_dim = inner // num_heads
    query = query.view(batch, q_len, num_heads, head_dim).transpose(1, 2)  # (B, nh, q, hd)
    keys = keys.view(batch, -1, num_heads, head_dim).transpose(1, 2)  # (B, nh, L, hd)
    values = values.view(batch, -1, num_heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(query, keys, values, dropout_p=dropout)  # (B, nh, q, hd)
    return out.transpose(1, 2).reshape(batch, q_len, inner)


def separable_pool(video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """video [B, t, s, D] -> (max over space [B, t, D], max over time [B, s, D])."""
    return video.amax(dim=2), video.amax(dim=1)


def _vision_tower_config(vision_config):
    """A loaded vision checkpoint's config -> the tower's own config: a full CLIP / SigLIP config gives its vision
    config; a timm config loses `model_args["num_classes"]` (timm 1.0.31's `save_for_hf` writes it there, and
    `TimmWrapperModel` passes `num_classes=0` itself, which would then be given twice). Other kinds are an error."""
    vision_config = FrozenCaptionerConfig._typed_vision_config(vision_config)
    if vision_config.model_type == "timm_wrapper" and "num_classes" in (vision_config.model_args or {}):
        vision_config.model_args = {k: v for k, v in vision_config.model_args.items() if k != "num_classes"}
    return vision_config


def _time_embeddings(config: FrozenCaptionerConfig) -> nn.Parameter | None:
    """Trainable time embeddings `[max_num_frames, D_v]` for a frame-wise tower (whose tokens carry no frame order);
    None for TimeSformer, which has its own. Initialised in `_init_weights` (truncated normal,
    `config.time_embedding_init_std`)."""
    if not config.frame_wise_vision:
        return None
    return nn.Parameter(torch.zeros(config.max_num_frames, config.vision_hidden_size))


def _check_frames_fit(time_embeddings: nn.Parameter | None, frames: int):
    if time_embeddings is not None and frames > time_embeddings.shape[0]:
        raise ValueError(
            f"{frames} frames, but the adapters' time embeddings cover at most {time_embeddings.shape[0]} "
            "(config.max_num_frames)"
        )


class FrozenCaptionerSeparableCrossAttention(nn.Module):
    """Separable cross-attention (the paper's §3): O(q (t + s)) instead of O(q t s).

    time branch: max-pool the video over space -> LayerNorm -> text attends over the t frame tokens;
    space branch: max-pool the video over time -> LayerNorm -> text attends over the s patch tokens;
    both outputs are concatenated along the hidden dimension and projected back to the text width.

    Frame-wise towers (which know nothing of frame order): trainable `time_embeddings[t]` is added to frame t's
    pooled token after the time LayerNorm, so its scale is that of the normalised tokens whatever the tower's feature
    scale (a CNN's ReLU maps, CLIP's residual stream). The space branch pools the tower's tokens as they are (a max over
    time). So the pooled tokens (`get_pooled_video_features`) are the frozen tower's alone, taken before anything
    trainable, and can be cached.
    """

    def __init__(self, config: FrozenCaptionerConfig):
        super().__init__()
        text_dim, vision_dim = config.text_config.hidden_size, config.vision_hidden_size
        inner, eps = config.adapter_hidden_size, config.vision_layer_norm_eps
        self.num_heads = config.adapter_num_heads
        self.dropout = config.adapter_dropout
        self.time_embeddings = _time_embeddings(config)
        self.time_layernorm = nn.LayerNorm(vision_dim, eps=eps)
        self.space_layernorm = nn.LayerNorm(vision_dim, eps=eps)
        self.time_q_proj = nn.Linear(text_dim, inner)
        self.time_k_proj = nn.Linear(vision_dim, inner)
        self.time_v_proj = nn.Linear(vision_dim, inner)
        self.space_q_proj = nn.Linear(text_dim, inner)
        self.space_k_proj = nn.Linear(vision_dim, inner)
        self.space_v_proj = nn.Linear(vision_dim, inner)
        self.out_proj = nn.Linear(2 * inner, text_dim)

    def project_visual(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """video [B, t, s, D_v] -> keys, values [B, t + s, inner] and the split (t, s)."""
        return self.project_pooled(*separable_pool(video))  # (B, t, s, Dv) -> (B, t, Dv), (B, s, Dv)

    def project_pooled(
        self, time_tokens: torch.Tensor, space_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """Pooled tokens: time [B, t, D_v] (max over space), space [B, s, D_v] (max over time) -> keys, values
        [B, t + s, inner] and the split (t, s)."""
        time_tokens, space_tokens = self.time_layernorm(time_tokens), self.space_layernorm(space_tokens)
        if self.time_embeddings is not None:
            _check_frames_fit(self.time_embeddings, time_tokens.shape[1])
            time_tokens = time_tokens + self.time_embeddings[: time_tokens.shape[1]]  # (B, t, Dv) + (t, Dv)
        keys = torch.cat([self.time_k_proj(time_tokens), self.space_k_proj(space_tokens)], dim=1)
        values = torch.cat([self.time_v_proj(time_tokens), self.space_v_proj(space_tokens)], dim=1)
        return keys, values, (time_tokens.shape[1], space_tokens.shape[1])

    def forward(self, hidden_states, keys, values, split):
        dropout = self.dropout if self.training else 0.0
        time_keys, space_keys = keys.split(split, dim=1)
        time_values, space_values = values.split(split, dim=1)
        time_out = _multihead_attention(
            self.time_q_proj(hidden_states), time_keys, time_values, self.num_heads, dropout
        )
        space_out = _multihead_attention(
            self.space_q_proj(hidden_states), space_keys, space_values, self.num_heads, dropout
        )
        return self.out_proj(torch.cat([time_out, space_out], dim=-1))  # (B, q, 2 inner) -> (B, q, d)


class FrozenCaptionerFullCrossAttention(nn.Module):
    """Ablation baseline: the text attends over all t*s video tokens, O(q t s). Frame-wise towers: trainable
    `time_embeddings[t]` is added to every (normalised) token of frame t."""

    def __init__(self, config: FrozenCaptionerConfig):
        super().__init__()
        text_dim, vision_dim = config.text_config.hidden_size, config.vision_hidden_size
        inner = config.adapter_hidden_size
        self.num_heads = config.adapter_num_heads
        self.dropout = config.adapter_dropout
        self.time_embeddings = _time_embeddings(config)
        self.video_layernorm = nn.LayerNorm(vision_dim, eps=config.vision_layer_norm_eps)
        self.q_proj = nn.Linear(text_dim, inner)
        self.k_proj = nn.Linear(vision_dim, inner)
        self.v_proj = nn.Linear(vision_dim, inner)
        self.out_proj = nn.Linear(inner, text_dim)

    def project_visual(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        if self.time_embeddings is None:
            tokens = self.video_layernorm(video.flatten(1, 2))  # (B, t, s, Dv) -> (B, t*s, Dv)
        else:
            _check_frames_fit(self.time_embeddings, video.shape[1])
            tokens = self.video_layernorm(video) + self.time_embeddings[: video.shape[1], None]  # + (t, 1, Dv)
            tokens = tokens.flatten(1, 2)  # (B, t, s, Dv) -> (B, t*s, Dv)
        return self.k_proj(tokens), self.v_proj(tokens), (tokens.shape[1],)

    def forward(self, hidden_states, keys, values, split):
        dropout = self.dropout if self.training else 0.0
        return self.out_proj(_multihead_attention(self.q_proj(hidden_states), keys, values, self.num_heads, dropout))


class FrozenCaptionerGatedCrossAttentionLayer(GradientCheckpointingLayer):
    """Pre-norm adapter with tanh gates (vector or scalar), run before one frozen decoder layer:

    h = h + tanh(g_attn) * XAttn(LN(h), V)
    h = h + tanh(g_ffn)  * FFN(LN(h))
    """

    def __init__(self, config: FrozenCaptionerConfig, layer_idx: int):
        super().__init__()
        dim = config.text_config.hidden_size
        self.layer_idx = layer_idx  # the decoder layer this adapter runs before
        self.cross_attn_layernorm = nn.LayerNorm(dim)
        attention_cls = (
            FrozenCaptionerSeparableCrossAttention
            if config.cross_attention == "separable"
            else FrozenCaptionerFullCrossAttention
        )
        self.cross_attn = attention_cls(config)
        self.ffn_layernorm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.adapter_ffn_multiplier * dim)
        self.fc2 = nn.Linear(config.adapter_ffn_multiplier * dim, dim)
        self.dropout = config.adapter_dropout
        gate_shape = (dim,) if config.gate_type == "vector" else (1,)
        self.attn_gate = nn.Parameter(torch.full(gate_shape, config.gate_init))
        self.ffn_gate = nn.Parameter(torch.full(gate_shape, config.gate_init))

    def project_visual(self, video: torch.Tensor):
        return self.cross_attn.project_visual(video)

    def project_pooled(self, time_tokens: torch.Tensor, space_tokens: torch.Tensor):
        return self.cross_attn.project_pooled(time_tokens, space_tokens)

    def forward(self, hidden_states, visual_keys, visual_values, visual_kv_split):
        residual = hidden_states
        hidden_states = self.cross_attn(
            self.cross_attn_layernorm(hidden_states), visual_keys, visual_values, visual_kv_split
        )
        hidden_states = residual + self.attn_gate.tanh() * hidden_states

        residual = hidden_states
        hidden_states = self.fc2(F.gelu(self.fc1(self.ffn_layernorm(hidden_states))))
        hidden_states = F.dropout(hidden_states, p=self.dropout, training=self.training)
        return residual + self.ffn_gate.tanh() * hidden_states


# The auto classes a saved folder maps to this model (config.json `auto_map`).
_MODEL_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText")


class FrozenCaptionerPreTrainedModel(PreTrainedModel):
    config_class = FrozenCaptionerConfig
    config: FrozenCaptionerConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("video", "image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["TimesformerLayer", "OPTDecoderLayer", "FrozenCaptionerGatedCrossAttentionLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """transformers guesses this from the source (an `*Attention*(nn.Module)` class without `AttentionInterface`
        means "cannot switch"): our adapters' attention classes trip that guess, so `set_attn_implementation` warned
        and left `config._attn_implementation` stale. The setting is meant for the towers (which follow it); the
        adapters always use `F.scaled_dot_product_attention` and return no weights."""
        return True

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, writing a folder that `AutoModel`, `AutoModelForImageTextToText`
        (`trust_remote_code=True`) load: `register_for_auto_class` records one auto class per model class, so the
        other auto classes of `_AUTO_MAP` are added to `config.auto_map` here; the `.py` files are copied by
        transformers' `custom_object_save`. This is what `Trainer`, accelerate and peft call."""
        module = type(self).__module__.rsplit(".", 1)[
            -1
        ]  # "modeling_frozencaptioner", also when loaded as remote code
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            **{auto: f"{module}.{type(self).__name__}" for auto in _MODEL_AUTO_CLASSES},
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def initialize_weights(self):
        """`PreTrainedModel.initialize_weights` (what `from_pretrained` runs on weights missing from a checkpoint),
        plus TimeSformer's `time_embeddings`: `TimesformerPreTrainedModel._init_weights` (5.23, 5.24) skips them, so a
        missing one stayed uninitialised memory; zeros, as `TimesformerEmbeddings.__init__` makes them."""
        super().initialize_weights()
        for module in self.modules():
            if isinstance(module, TimesformerEmbeddings):
                init.zeros_(module.time_embeddings)  # no-op on a loaded tensor (`_is_hf_initialized`)

    def _init_weights(self, module):
        super()._init_weights(module)
        # Named explicitly (as Idefics does) so that no generic init overwrites the configured gate value.
        if isinstance(module, FrozenCaptionerGatedCrossAttentionLayer):
            init.constant_(module.attn_gate, self.config.gate_init)
            init.constant_(module.ffn_gate, self.config.gate_init)
        # Frame-wise towers' time embeddings: random, not zeros. With zeros the step-0 model is exactly blind to frame
        # order (a frame-wise tower, max-pooling and attention are all permutation-equivariant or -invariant over
        # frames). They would still train (their gradient is not zero), but at step 0 the adapters' attention is
        # nearly uniform, so the order signal grows only as fast as the embeddings do. They are added to
        # LayerNorm'ed tokens (unit RMS per dimension): std 0.5 is of the order of the content (a fixed code per frame
        # loses no information about it) without dominating it. Measured on the tiny towers (16 clips and their
        # reversals captioned left / right, tiny CLIP tower, 120 Adam steps at lr 1e-3): loss 0.84 with zeros, 0.81 at
        # std 0.02 (the ViT init of position embeddings), 0.60 at 0.1, 0.41 at 0.3, 0.31 at 0.5, 0.18 at 1.0; a model
        # that cannot tell the orders apart stays above ln 2 = 0.69.
        if isinstance(module, (FrozenCaptionerSeparableCrossAttention, FrozenCaptionerFullCrossAttention)):
            if module.time_embeddings is not None:
                std = self.config.time_embedding_init_std
                if std > 0:
                    init.trunc_normal_(module.time_embeddings, std=std, a=-2 * std, b=2 * std)
                else:
                    init.zeros_(module.time_embeddings)


class FrozenCaptionerForConditionalGeneration(FrozenCaptionerPreTrainedModel, GenerationMixin):
    r"""
    Frozen vision tower + frozen OPT + trainable gated cross-attention adapters (sibling `ModuleList`, interleaved with
    the decoder layers in an explicit loop). Images are one-frame videos.

    The vision tower is a TimeSformer (the paper: one video forward, tokens `[CLS] + (h w t)`) or an image encoder
    applied to every frame (`CLIPVisionModel`, `SiglipVisionModel`, `TimmWrapperModel`): frames are folded into the
    batch, prefix tokens (CLIP's CLS, timm's `num_prefix_tokens` class/register tokens) are dropped and a CNN's
    `(C, h, w)` feature map becomes `(h w)` tokens, giving `[B, t, s, D]`. Such a tower knows nothing of frame order,
    so each adapter adds trainable time embeddings to the frame tokens (see `FrozenCaptionerSeparableCrossAttention`);
    they live under `gated_cross_attn_layers`, so the trainable parameters are still exactly the adapters'.

    Example:

    ```python
    >>> model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(
    ...     "facebook/timesformer-base-finetuned-k400", "facebook/opt-1.3b", adapter_layers=[12, 14, 16, 18, 20, 22])
    >>> ids = model.generate(pixel_values=video, max_new_tokens=20)  # video: (batch, frames, 3, 224, 224)
    ```"""

    _tied_weights_keys = {"language_model.lm_head.weight": "language_model.model.decoder.embed_tokens.weight"}

    def __init__(
        self,
        config: FrozenCaptionerConfig,
        vision_model: PreTrainedModel | None = None,
        language_model: PreTrainedModel | None = None,
    ):
        r"""
        vision_model (`PreTrainedModel`, *optional*):
            An already built (e.g. pre-trained) vision tower for `config.vision_config`; default: built from config.
        language_model (`PreTrainedModel`, *optional*):
            An already built causal LM for `config.text_config`; default: built from config.
        """
        super().__init__(config)
        # Built from config (VisionEncoderDecoder's pattern) so `from_pretrained` loads one state dict; towers that
        # are passed in (`from_pretrained_backbones`) are used as they are, so their weights exist once in memory.
        self.vision_model = vision_model if vision_model is not None else AutoModel.from_config(config.vision_config)
        self.language_model = (
            language_model if language_model is not None else AutoModelForCausalLM.from_config(config.text_config)
        )
        self.vision_model.config = self.config.vision_config
        self.language_model.config = self.config.text_config
        self.gated_cross_attn_layers = nn.ModuleList(
            [FrozenCaptionerGatedCrossAttentionLayer(config, layer_idx) for layer_idx in config.adapter_layers]
        )
        self.gradient_checkpointing = False
        self.post_init()
        self.freeze_relevant_params()

    # ------------------------------------------------------------------ freezing
    def freeze_relevant_params(self):
        """Apply `freeze_vision_model` / `freeze_language_model`. Run again after loading: `from_pretrained`
        re-creates loaded parameters as trainable."""
        if self.config.freeze_vision_model:
            self.vision_model.requires_grad_(False)
        if self.config.freeze_language_model:
            self.language_model.requires_grad_(False)
        self.gated_cross_attn_layers.requires_grad_(True)
        self.train(self.training)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.freeze_relevant_params()
        return loaded

    def train(self, mode: bool = True):
        """Frozen towers stay in eval mode (no dropout, no checkpointing) whatever `mode` is."""
        super().train(mode)
        if self.config.freeze_vision_model:
            self.vision_model.eval()
        if self.config.freeze_language_model:
            self.language_model.eval()
        return self

    @classmethod
    def from_pretrained_backbones(cls, vision_model_name_or_path: str, text_model_name_or_path: str, **kwargs):
        """Step 0 of training: pre-trained vision tower and OPT checkpoints, fresh adapters.

        The vision checkpoint is a TimeSformer (e.g. `facebook/timesformer-base-finetuned-k400`, or one written by
        `frozencaptioner.convert_timesformer`), a CLIP / SigLIP checkpoint (a full `CLIPModel` / `SiglipModel`
        checkpoint loads only its vision tower; a `CLIPVisionModel` one as is) or a timm checkpoint (a timm Hub repo
        such as `timm/vit_base_patch16_clip_224.openai`, or a `TimmWrapperModel.save_pretrained` folder).

        `kwargs` are `FrozenCaptionerConfig` fields (`adapter_layers`, `gate_init`, `max_num_frames`, ...);
        `revision`, `cache_dir`, `token`, `local_files_only` and `attn_implementation` go to both towers'
        `from_pretrained`.

        `dtype` sets ONE dtype for the whole model: without it every parameter is float32 (transformers 5 would
        otherwise load each tower in its checkpoint's dtype, e.g. `facebook/opt-1.3b` in fp16 beside an fp32
        TimeSformer, and `generate()` fails on the mismatch); `dtype=torch.bfloat16` (or `"bfloat16"`) makes every
        parameter bf16; `dtype="auto"` uses the text checkpoint's stored dtype for everything. For mixed-precision
        training keep the default (fp32 trainable parameters) and let autocast / the DeepSpeed config cast.
        """
        load_keys = ("revision", "cache_dir", "token", "local_files_only", "attn_implementation")
        load_kwargs = {k: kwargs.pop(k) for k in load_keys if k in kwargs}
        dtype = kwargs.pop("dtype", None)
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        config_keys = ("revision", "cache_dir", "token", "local_files_only")
        vision_config = AutoConfig.from_pretrained(
            vision_model_name_or_path, **{k: v for k, v in load_kwargs.items() if k in config_keys}
        )
        vision_config = _vision_tower_config(vision_config)  # a full CLIP / SigLIP -> its vision tower; checks kind
        text = AutoModelForCausalLM.from_pretrained(
            text_model_name_or_path, dtype=torch.float32 if dtype is None else dtype, **load_kwargs
        )
        target = text.dtype  # float32, the requested dtype, or (for "auto") the text checkpoint's
        if vision_config.model_type == "timesformer":
            vision = AutoModel.from_pretrained(vision_model_name_or_path, dtype=target, **load_kwargs)
        else:  # the config picks the tower class: CLIPVisionModel out of a full CLIPModel checkpoint, etc.
            vision = AutoModel.from_pretrained(
                vision_model_name_or_path, config=vision_config, dtype=target, **load_kwargs
            )
        if text.config.model_type != "opt":
            raise ValueError(
                f"expected a TimeSformer (or frame-wise image tower) and an OPT checkpoint, got {vision.config.model_type!r} and {text.config.model_type!r}"
            )
        if vision.config.model_type == "timm_wrapper":
            kwargs.setdefault("vision_hidden_size", vision.timm_model.num_features)
        config = FrozenCaptionerConfig(vision_config=vision.config, text_config=text.config, **kwargs)
        model = cls(config, vision_model=vision, language_model=text)
        model.to(target)  # the fresh adapters (built in the default dtype)
        model.freeze_relevant_params()
        return model

    # ------------------------------------------------------------------ embeddings (peft / checkpointing hooks)
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings):
        """Used by `resize_token_embeddings` (the lm_head lives in the language model, not on this class)."""
        self.language_model.set_output_embeddings(new_embeddings)

    def enable_input_require_grads(self):
        """Hook only the text embeddings: TimeSformer's embedding module returns a tuple."""

        def make_inputs_require_grads(module, input, output):
            output.requires_grad_(True)

        self._require_grads_hooks = [self.get_input_embeddings().register_forward_hook(make_inputs_require_grads)]
        self._require_grads_hook = self._require_grads_hooks[0]

    # ------------------------------------------------------------------ vision
    def _vision_layer_configs(self) -> list:
        """The config objects the tower's layers read their geometry from, made private to the layers on first use:
        only the layers read `num_frames` / `image_size` during a forward, so a per-call geometry is set on these
        copies and the model's own `config.vision_config` (validation, saving, other threads) is never changed."""
        public = self.vision_model.config
        layers = [
            m for m in self.vision_model.modules() if hasattr(m, "config") and not isinstance(m, PreTrainedModel)
        ]
        private = next((m.config for m in layers if m.config is not public), None)
        for module in layers:
            if module.config is public:
                private = private if private is not None else copy.copy(public)
                module.config = private
        return list({id(m.config): m.config for m in layers}.values())

    @contextlib.contextmanager
    def _vision_geometry(self, num_frames: int, width: int):
        """HF TimeSformer layers reshape with `config.num_frames` / `config.image_size` (and give silently wrong
        results when the input differs), so point them at the input's geometry for the duration of the call. Their
        config is shared by concurrent calls: a `_GeometryGate` lets threads with the same geometry run together and
        makes one with another geometry wait, so no call sees another's geometry."""
        configs = self._vision_layer_configs()
        if not configs:
            yield
            return

        def apply(geometry):
            saved = [(c, c.num_frames, c.image_size) for c in configs]
            for c in configs:
                c.num_frames, c.image_size = geometry
            return saved

        def restore(saved):
            for c, frames, size in saved:
                c.num_frames, c.image_size = frames, size

        with _geometry_gate(configs[0]).hold((num_frames, width), apply, restore):
            yield

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vc = self.config.vision_config
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if pixel_values.ndim == 4:  # (B, 3, H, W): images are one-frame videos
            pixel_values = pixel_values.unsqueeze(1)
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must have shape (batch, frames, channels, height, width), got rank {pixel_values.ndim} "
                f"with shape {tuple(pixel_values.shape)}"
            )
        _, frames, channels, height, width = pixel_values.shape
        num_channels = self._vision_num_channels()
        if channels != num_channels:
            raise ValueError(
                f"pixel_values has {channels} channels at dim 2, the vision tower expects {num_channels} "
                f"(shape must be (batch, frames, channels, height, width), got {tuple(pixel_values.shape)})"
            )
        max_frames = self.config.max_num_frames
        if not 1 <= frames <= max_frames:
            why = "the adapters' time embeddings" if self.config.frame_wise_vision else "the tower's time embeddings"
            raise ValueError(f"pixel_values has {frames} frames; this model supports 1 to {max_frames} "
                             f"(config.max_num_frames: {why})")  # fmt: skip
        patch = self._vision_patch_size()
        if patch is not None and (height % patch or width % patch):
            raise ValueError(f"frame size {height}x{width} is not a multiple of the patch size {patch}")
        if vc.model_type == "timm_wrapper":
            patch_embed = getattr(self.vision_model.timm_model, "patch_embed", None)
            fixed = getattr(patch_embed, "strict_img_size", False) and not getattr(patch_embed, "dynamic_img_pad", 0)
            if fixed and tuple(patch_embed.img_size) != (height, width):
                raise ValueError(
                    f"frame size {height}x{width}: this timm tower was built for {tuple(patch_embed.img_size)} only; "
                    "build it with model_args={'dynamic_img_size': True} (or {'img_size': ...}) for other sizes"
                )
        return pixel_values

    def _vision_num_channels(self) -> int:
        vc = self.config.vision_config
        if vc.model_type == "timm_wrapper":
            return int((vc.model_args or {}).get("in_chans", 3))
        return vc.num_channels

    def _vision_patch_size(self) -> int | None:
        """The patch size input sizes must be a multiple of (None: a CNN, which takes any size)."""
        vc = self.config.vision_config
        if vc.model_type != "timm_wrapper":
            return vc.patch_size
        patch_embed = getattr(self.vision_model.timm_model, "patch_embed", None)
        patch = getattr(patch_embed, "patch_size", None)
        if patch is None or getattr(patch_embed, "dynamic_img_pad", False):  # a CNN, or a ViT that pads its input
            return None
        return patch[0] if isinstance(patch, (tuple, list)) else patch

    def get_video_features(
        self,
        pixel_values: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        Run the vision tower on `pixel_values` of shape `(batch, frames, 3, height, width)` (or `(batch, 3, H, W)` for
        images); any frame count from 1 to `config.max_num_frames`.

        TimeSformer: any size that is a multiple of the patch size is handled correctly; `last_hidden_state` is
        `[CLS] + patches` in TimeSformer's `(h w t)` order, `(batch, 1 + patches * frames, dim)`; `pooler_output` is
        the CLS token.

        Frame-wise towers: the `batch * frames` frames go through the image tower as one batch; `last_hidden_state` is
        `(batch, frames, patches, dim)` (prefix tokens dropped, a CNN map flattened to `(h w)` tokens), `pooler_output`
        the tower's own pooled output per frame `(batch, frames, dim)` (None for timm), `hidden_states` / `attentions`
        the tower's, per image. CLIP / SigLIP interpolate their position embeddings for other sizes; a timm ViT needs
        `model_args={"dynamic_img_size": True}` for that.

        Either way this is the frozen tower alone: the frame-wise time embeddings are added inside the adapters.
        A tuple when `return_dict` (default `config.return_dict`) is False.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        pixel_values = self._check_pixel_values(pixel_values)
        frames, width = pixel_values.shape[1], pixel_values.shape[-1]
        frozen = not any(p.requires_grad for p in self.vision_model.parameters())
        grad = contextlib.nullcontext() if not frozen else torch.no_grad()
        if self.config.frame_wise_vision:
            with grad:
                output = self._frame_wise_features(pixel_values, output_hidden_states, output_attentions)
            return output if return_dict else output.to_tuple()
        with grad, self._vision_geometry(frames, width):
            out = self.vision_model(
                pixel_values.to(self.vision_model.dtype),
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
            )
        output = BaseModelOutputWithPooling(
            last_hidden_state=out.last_hidden_state,
            pooler_output=out.last_hidden_state[:, 0],
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _frame_wise_features(
        self, pixel_values, output_hidden_states, output_attentions
    ) -> BaseModelOutputWithPooling:
        """An image tower on every frame: (B, t, C, H, W) -> tokens (B, t, s, D) (see `get_video_features`)."""
        vc = self.config.vision_config
        batch, frames = pixel_values.shape[:2]
        images = pixel_values.flatten(0, 1).to(self.vision_model.dtype)  # (B, t, C, H, W) -> (B*t, C, H, W)
        options = {"output_hidden_states": output_hidden_states} if output_hidden_states else {}
        if vc.model_type == "timm_wrapper":
            if output_attentions:
                raise ValueError("timm towers do not return attention weights (output_attentions)")
            out = self.vision_model(images, do_pooling=False, return_dict=True, **options)
        else:
            if output_attentions:
                options["output_attentions"] = True
            native = vc.image_size if isinstance(vc.image_size, (tuple, list)) else (vc.image_size, vc.image_size)
            resized = tuple(images.shape[-2:]) != tuple(native)  # CLIP / SigLIP interpolate position embeddings
            out = self.vision_model(pixel_values=images, interpolate_pos_encoding=resized, return_dict=True, **options)
        tokens = self._frame_tokens(out.last_hidden_state).unflatten(0, (batch, frames))  # (B*t, s, D) -> (B, t, s, D)
        pooled = getattr(out, "pooler_output", None)
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens,
            pooler_output=pooled.unflatten(0, (batch, frames)) if pooled is not None else None,  # (B, t, D)
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )

    def _frame_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        """One image tower output per frame -> its patch tokens (N, s, D). CLIP drops its CLS token (as the TimeSformer
        path does), timm ViTs their `num_prefix_tokens` (class, register, distillation tokens); a CNN feature map
        (N, C, h, w) (or NHWC, timm's `output_fmt`) becomes h*w tokens in (h w) order."""
        vc, dim = self.config.vision_config, self.config.vision_hidden_size
        if vc.model_type == "clip_vision_model":
            return hidden[:, 1:]  # (N, 1 + s, D) -> (N, s, D)
        if vc.model_type == "siglip_vision_model":
            return hidden  # no prefix tokens
        timm_model = self.vision_model.timm_model
        if hidden.ndim == 3 and hidden.shape[-1] == dim:
            return hidden[:, getattr(timm_model, "num_prefix_tokens", 0) :]  # (N, prefix + s, D) -> (N, s, D)
        if hidden.ndim == 4:
            if getattr(timm_model, "output_fmt", "NCHW") == "NHWC" and hidden.shape[-1] == dim:
                return hidden.flatten(1, 2)  # (N, h, w, D) -> (N, h*w, D)
            if hidden.shape[1] == dim:
                return hidden.flatten(2).transpose(1, 2)  # (N, D, h, w) -> (N, h*w, D)
        raise ValueError(
            f"cannot read patch tokens from the timm tower {vc.architecture!r}: forward_features returned shape "
            f"{tuple(hidden.shape)}; expected (N, prefix + tokens, {dim}) or a (N, {dim}, h, w) feature map"
        )

    def get_image_features(self, pixel_values: torch.FloatTensor, **kwargs) -> tuple | BaseModelOutputWithPooling:
        """Images are one-frame videos: `(batch, 3, H, W)` -> `get_video_features`."""
        return self.get_video_features(pixel_values, **kwargs)

    def get_pooled_video_features(self, pixel_values: torch.FloatTensor) -> torch.Tensor:
        r"""
        The separable adapters' whole visual input, for caching: the frozen tower's tokens max-pooled over space per
        frame and over time per patch, `(batch, frames + patches, dim)`, time tokens first (8 frames of TimeSformer-base
        at 224 px: 8 + 196 = 204 tokens instead of 1 + 1568). Feed them back as `vision_pooled_states` with
        `vision_num_frames=frames` (or as the pair `(pooled[:, :frames], pooled[:, frames:])`); the logits and adapter
        gradients are those from `pixel_values`.

        Nothing trainable runs before this point (frame-wise towers' time embeddings are added inside the adapters),
        but the tower must be frozen: with trainable tower weights this raises (a cache skips their gradients and goes
        stale as they train). Full cross-attention attends over all tokens: cache
        `get_video_features(...).last_hidden_state` and pass it as `vision_hidden_states` instead.
        """
        if self.config.cross_attention != "separable":
            raise ValueError(
                "pooled tokens feed separable cross-attention only; full cross-attention attends over all t*s tokens: "
                "cache get_video_features(pixel_values).last_hidden_state and pass it as vision_hidden_states"
            )
        self._check_tower_frozen("get_pooled_video_features")
        pixel_values = self._check_pixel_values(pixel_values)
        features = self.get_video_features(pixel_values, return_dict=True).last_hidden_state
        tokens = self._video_tokens(features, pixel_values.shape[1])
        time_tokens, space_tokens = separable_pool(tokens)  # (B, t, D), (B, s, D)
        return torch.cat([time_tokens, space_tokens], dim=1)  # (B, t + s, D)

    def _check_tower_frozen(self, what: str):
        trainable = [n for n, p in self.vision_model.named_parameters() if p.requires_grad]
        if trainable:
            raise ValueError(
                f"{what}: the vision tower has trainable parameters ({len(trainable)}, e.g. {trainable[0]!r}; "
                "freeze_vision_model=False?): cached visual features would skip their gradients and go stale as they "
                "train. Cache features only from a frozen tower, or train from pixel_values."
            )

    def _video_tokens(self, vision_hidden_states: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Tower output [B, 1 + s*t, D] in (h w t) order (patch-major) -> [B, t, s, D]; CLS dropped.

        Also accepts an already shaped [B, t, s, D] (what frame-wise towers return). A 3-D input needs `num_frames`:
        the token count alone is ambiguous (one 448 px image has as many tokens as four 224 px frames).
        """
        if vision_hidden_states.ndim == 4:
            return vision_hidden_states
        if self.config.frame_wise_vision:
            raise ValueError(
                "vision_hidden_states of a frame-wise tower must be (batch, frames, patches, dim), as "
                f"get_video_features returns it; got shape {tuple(vision_hidden_states.shape)}"
            )
        if vision_hidden_states.ndim != 3:
            raise ValueError(
                "vision_hidden_states must be the vision tower's last_hidden_state (batch, 1 + patches * frames, dim) "
                f"or (batch, frames, patches, dim), got shape {tuple(vision_hidden_states.shape)}"
            )
        batch, tokens, dim = vision_hidden_states.shape
        if num_frames is None:
            raise ValueError(
                f"vision_hidden_states of shape {tuple(vision_hidden_states.shape)} (the tower's last_hidden_state) needs "
                "vision_num_frames=<frames per clip>: 1 + patches * frames tokens do not say how many frames they hold. "
                "Or pass it as (batch, frames, patches, dim)."
            )
        if num_frames < 1 or (tokens - 1) % num_frames:
            raise ValueError(f"{tokens - 1} patch tokens do not split into {num_frames} frames")
        patches = vision_hidden_states[:, 1:].reshape(
            batch, (tokens - 1) // num_frames, num_frames, dim
        )  # (B, s, t, D)
        return patches.transpose(1, 2)  # (B, t, s, D)

    def _pooled_tokens(self, vision_pooled_states, num_frames: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`vision_pooled_states` -> (time [B, t, D], space [B, s, D]), checked."""
        if isinstance(vision_pooled_states, (tuple, list)):
            if len(vision_pooled_states) != 2:
                raise ValueError(
                    f"vision_pooled_states as a pair is (time, space), got {len(vision_pooled_states)} items"
                )
            time_tokens, space_tokens = vision_pooled_states
            if num_frames is not None and time_tokens.shape[1] != num_frames:
                raise ValueError(
                    f"vision_num_frames={num_frames} but the time tokens hold {time_tokens.shape[1]} frames"
                )
        else:
            shape = tuple(getattr(vision_pooled_states, "shape", ()))
            if len(shape) != 3:
                raise ValueError(
                    "vision_pooled_states must be (batch, frames + patches, dim) from get_pooled_video_features, or "
                    f"the pair (time (batch, frames, dim), space (batch, patches, dim)); got shape {shape}"
                )
            if num_frames is None:
                raise ValueError(
                    f"vision_pooled_states of shape {shape} needs vision_num_frames=<frames per clip>: the first "
                    "frames tokens are the time tokens, the rest the space tokens"
                )
            if not 1 <= num_frames < shape[1]:
                raise ValueError(f"vision_num_frames={num_frames} leaves no space tokens in {shape[1]} pooled tokens")
            time_tokens, space_tokens = vision_pooled_states[:, :num_frames], vision_pooled_states[:, num_frames:]
        dim = self.config.vision_hidden_size
        for name, tokens in (("time", time_tokens), ("space", space_tokens)):
            if tokens.ndim != 3 or tokens.shape[-1] != dim or tokens.shape[0] != time_tokens.shape[0]:
                raise ValueError(
                    f"pooled {name} tokens must be (batch, n, {dim}) with one batch size, got {tuple(tokens.shape)}"
                )
        return time_tokens, space_tokens

    def compute_visual_key_values(
        self,
        video_tokens: torch.Tensor | None = None,
        pooled_tokens: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """Each adapter's visual keys/values, computed once per video: [B, n_adapters, 2, L, inner] and the split of L
        (`(t, s)` for separable, `(t*s,)` for full cross-attention). From `video_tokens` [B, t, s, D_v] or, for
        separable cross-attention, from its pooled tokens `(time [B, t, D_v], space [B, s, D_v])`."""
        if (video_tokens is None) == (pooled_tokens is None):
            raise ValueError("pass video_tokens or pooled_tokens")
        separable = self.config.cross_attention == "separable"
        adapter_dtype = self.gated_cross_attn_layers[0].fc1.weight.dtype
        if pooled_tokens is not None:
            if not separable:
                raise ValueError(
                    "pooled tokens feed separable cross-attention only; full cross-attention needs all t*s tokens "
                    "(vision_hidden_states)"
                )
            time_tokens, space_tokens = (tokens.to(adapter_dtype) for tokens in pooled_tokens)
        else:
            dim = self.config.vision_hidden_size
            if video_tokens.ndim != 4 or video_tokens.shape[-1] != dim:
                raise ValueError(
                    f"video tokens must be (batch, frames, patches, {dim}), got {tuple(video_tokens.shape)}"
                )
            video_tokens = video_tokens.to(adapter_dtype)
            if separable:
                time_tokens, space_tokens = separable_pool(video_tokens)  # (B, t, D), (B, s, D)
        packed, split = [], None
        for adapter in self.gated_cross_attn_layers:
            if separable:
                keys, values, split = adapter.project_pooled(time_tokens, space_tokens)
            else:
                keys, values, split = adapter.project_visual(video_tokens)
            packed.append(torch.stack([keys, values], dim=1))  # (B, 2, L, inner)
        return torch.stack(packed, dim=1), tuple(split)  # (B, n_adapters, 2, L, inner)

    def _visual_inputs(
        self,
        pixel_values,
        vision_hidden_states,
        visual_key_values,
        visual_kv_split,
        vision_num_frames=None,
        vision_pooled_states=None,
    ):
        """Whichever visual input was given -> (packed adapter K/V, split, tower last_hidden_state or None)."""
        inputs = {
            "pixel_values": pixel_values,
            "vision_hidden_states": vision_hidden_states,
            "vision_pooled_states": vision_pooled_states,
            "visual_key_values": visual_key_values,
        }
        given = {name: x is not None for name, x in inputs.items()}
        if sum(given.values()) != 1:
            raise ValueError(
                f"pass exactly one of {', '.join(inputs)} (got "
                + ", ".join(f"{name}={flag}" for name, flag in given.items())
                + ")"
            )
        if visual_key_values is not None:
            if visual_kv_split is None:
                raise ValueError("visual_key_values needs visual_kv_split (returned by compute_visual_key_values)")
            return visual_key_values, tuple(visual_kv_split), None
        if vision_pooled_states is not None:
            if torch.is_grad_enabled():
                self._check_tower_frozen("vision_pooled_states")
            pooled = self._pooled_tokens(vision_pooled_states, vision_num_frames)
            keys_values, split = self.compute_visual_key_values(pooled_tokens=pooled)
            return keys_values, split, None
        num_frames = vision_num_frames
        if pixel_values is not None:
            # validates the shape
            vision_hidden_states = self.get_video_features(pixel_values, return_dict=True).last_hidden_state
            num_frames = pixel_values.shape[1] if pixel_values.ndim == 5 else 1
        video_tokens = self._video_tokens(vision_hidden_states, num_frames)
        keys_values, split = self.compute_visual_key_values(video_tokens)
        return keys_values, split, vision_hidden_states if pixel_values is not None else None

    # ------------------------------------------------------------------ forward
    @_deprecate_past_key_values
    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        vision_hidden_states: torch.FloatTensor | None = None,
        vision_num_frames: int | None = None,
        vision_pooled_states: torch.FloatTensor | tuple[torch.FloatTensor, torch.FloatTensor] | None = None,
        visual_key_values: torch.FloatTensor | None = None,
        visual_kv_split: tuple[int, ...] | None = None,
        cache: Cache | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        position_ids: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> tuple | FrozenCaptionerCausalLMOutputWithPast:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, frames, 3, height, width)`, *optional*):
                Video clips (frames=1 for images; `(batch_size, 3, H, W)` is read as images).
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Caption tokens, starting with OPT's BOS (token 2).
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding.
            vision_hidden_states (`torch.FloatTensor`, *optional*):
                Cached vision tower output (`get_video_features(...).last_hidden_state`, shape
                `(batch, 1 + patches * frames, dim)` with `vision_num_frames`, or `(batch, frames, patches, dim)`)
                instead of `pixel_values`.
            vision_num_frames (`int`, *optional*):
                Frames per clip of a 3-D `vision_hidden_states` or of a `vision_pooled_states` tensor (required there:
                the token count is ambiguous).
            vision_pooled_states (`torch.FloatTensor` of shape `(batch, frames + patches, dim)`, or a pair, *optional*):
                Cached pooled tokens from `get_pooled_video_features` (with `vision_num_frames`), or the pair
                `(time (batch, frames, dim), space (batch, patches, dim))`, instead of `pixel_values`: all that
                separable cross-attention reads of the video, so training needs no tower forward (any float dtype;
                cast to the adapters'). Not for `cross_attention="full"`, nor with a trainable tower.
            visual_key_values (`torch.FloatTensor` of shape `(batch, n_adapters, 2, L, adapter_hidden)`, *optional*):
                Adapters' projected visual keys/values (`compute_visual_key_values`); `generate()` passes these so
                they are computed once per call. Needs `visual_kv_split`.
            cache (`Cache`, *optional*):
                The decoder's self-attention cache. `past_key_values` is the same argument under its pre-5.24 name
                (transformers up to 5.23 passes that one from `generate()`; from 5.24 it is deprecated, with
                transformers' FutureWarning); give at most one of them.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Targets for the LM loss (shifted inside); `-100` is ignored.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Return the decoder's hidden states: all of them (`True`), or only those at the given indices (the
                others are None; negative indices count from the end), as transformers' own models do.
        """
        if cache is not None and past_key_values is not None:
            raise ValueError("pass the KV cache as `cache` or as `past_key_values`, not both")
        cache = cache if cache is not None else past_key_values
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(
                "pass exactly one of input_ids or inputs_embeds"
                + (" (labels were given without text)" if labels is not None else "")
            )
        text_shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if labels is not None and tuple(labels.shape) != tuple(text_shape):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match the text shape {tuple(text_shape)}")
        if attention_mask is not None and attention_mask.shape[0] != text_shape[0]:
            raise ValueError(f"attention_mask batch {attention_mask.shape[0]} != text batch {text_shape[0]}")

        visual_kv, split, video_hidden = self._visual_inputs(
            pixel_values, vision_hidden_states, visual_key_values, visual_kv_split, vision_num_frames,
            vision_pooled_states,
        )  # fmt: skip
        if visual_kv.shape[0] != text_shape[0]:
            raise ValueError(f"video batch {visual_kv.shape[0]} != text batch {text_shape[0]}")

        use_cache = use_cache if use_cache is not None else self.config.text_config.use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and use_cache:
            logger.warning_once("use_cache=True is incompatible with gradient checkpointing; setting use_cache=False")
            use_cache = False
        hidden_states, cache, all_hidden, all_attn = self._decode(
            input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache, visual_kv, split,
            output_hidden_states, output_attentions, **kwargs,
        )  # fmt: skip

        lm = self.language_model
        hidden_states = (
            hidden_states[:, -logits_to_keep:] if isinstance(logits_to_keep, int) and logits_to_keep else hidden_states
        )
        logits = lm.lm_head(hidden_states)
        loss = None
        if labels is not None:
            # `kwargs` carry the loss options transformers' Trainer / accelerate pass (`num_items_in_batch` for
            # gradient accumulation, pre-shifted `shift_labels` under sequence parallelism), as in OPTForCausalLM.
            loss = lm.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )

        output = FrozenCaptionerCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=all_hidden,
            attentions=all_attn,
            video_hidden_states=video_hidden,
            **{_OUTPUT_CACHE_FIELD: cache if use_cache else None},
        )
        return output if return_dict else output.to_tuple()

    # Adapted from transformers.models.opt.modeling_opt.OPTDecoder.forward (v5.23, checked against v5.24): adapters
    # interleaved in an explicit loop (Idefics' pattern), layers below the first adapter without autograd.
    # The loop relies on these OPT / transformers internals (each is exercised by tests/test_modeling.py and
    # tests/test_generation.py on both ends of TESTED_TRANSFORMERS, see .ci/run):
    #   decoder.embed_tokens, decoder.embed_positions(attention_mask, past_len, position_ids=...), decoder.project_in,
    #   decoder.project_out, decoder.final_layer_norm, decoder.layers, decoder.layerdrop, decoder.training,
    #   OPTDecoderLayer(hidden_states, attention_mask=, position_ids=, use_cache=, <cache kwarg>=) returning a tensor,
    #   layer.self_attn (forward hook, output[1] = attention weights), config._attn_implementation,
    #   create_causal_mask(config=, inputs_embeds=, attention_mask=, <cache kwarg>=), DynamicCache(config=),
    #   Cache.get_seq_length(), self._gradient_checkpointing_func (set by activation_checkpointing_enable),
    #   lm.lm_head, lm.loss_function(logits=, labels=, vocab_size=, **kwargs).
    # The cache keyword is `past_key_values` up to 5.23 and `cache` from 5.24 (_LAYER_CACHE_KWARG, _MASK_CACHE_KWARG).
    def _decode(
        self,
        input_ids,
        inputs_embeds,
        attention_mask,
        position_ids,
        cache,
        use_cache,
        visual_kv,
        split,
        output_hidden_states,
        output_attentions,
        **kwargs,
    ):
        decoder = self.language_model.model.decoder
        first_adapter = self.config.adapter_layers[0]
        adapter_of = {layer: i for i, layer in enumerate(self.config.adapter_layers)}
        lower_modules = [
            decoder.embed_tokens,
            decoder.embed_positions,
            decoder.project_in,
            *decoder.layers[:first_adapter],
        ]
        lower_trainable = any(p.requires_grad for m in lower_modules if m is not None for p in m.parameters())
        grad_enabled = torch.is_grad_enabled()
        checkpointing = self.gradient_checkpointing and self.training and grad_enabled

        all_hidden = () if output_hidden_states else None
        keep_hidden = _selected_hidden_states(output_hidden_states, len(decoder.layers) + 1)  # None: keep all
        all_attn = () if output_attentions else None
        hooks, all_attn_list = [], []
        if output_attentions:
            if self.config.text_config._attn_implementation != "eager":
                logger.warning_once("output_attentions needs attn_implementation='eager'; weights may be None")
            hooks = [
                layer.self_attn.register_forward_hook(lambda m, a, o: all_attn_list.append(o[1]))
                for layer in decoder.layers
            ]

        try:
            with torch.set_grad_enabled(grad_enabled and lower_trainable):
                if inputs_embeds is None:
                    inputs_embeds = decoder.embed_tokens(input_ids)
                if use_cache and cache is None:
                    cache = DynamicCache(config=self.config.text_config)
                past_seen_tokens = cache.get_seq_length() if cache is not None else 0
                position_attention_mask = attention_mask
                if position_attention_mask is None:
                    seq_length = past_seen_tokens + inputs_embeds.shape[1]
                    position_attention_mask = torch.ones(
                        inputs_embeds.shape[0], seq_length, device=inputs_embeds.device
                    )
                if position_ids is None:
                    position_ids = torch.cumsum(position_attention_mask, dim=1)
                    position_ids = (position_ids * position_attention_mask - 1).long()[:, past_seen_tokens:]
                causal_mask = create_causal_mask(
                    config=self.config.text_config,
                    inputs_embeds=inputs_embeds,
                    attention_mask=attention_mask,
                    **{_MASK_CACHE_KWARG: cache},
                )
                pos_embeds = decoder.embed_positions(
                    position_attention_mask, past_seen_tokens, position_ids=position_ids
                )
                if decoder.project_in is not None:
                    inputs_embeds = decoder.project_in(inputs_embeds)
                hidden_states = inputs_embeds + pos_embeds.to(inputs_embeds.device)

            layer_kwargs = dict(attention_mask=causal_mask, position_ids=position_ids, **kwargs)
            for idx, decoder_layer in enumerate(decoder.layers):
                lower = idx < first_adapter
                with torch.set_grad_enabled(grad_enabled and (lower_trainable or not lower)):
                    if idx in adapter_of:
                        a = adapter_of[idx]
                        adapter = self.gated_cross_attn_layers[a]
                        keys, values = visual_kv[:, a, 0], visual_kv[:, a, 1]
                        hidden_states = adapter(hidden_states, keys, values, split)
                    if output_hidden_states:
                        all_hidden += (
                            hidden_states if keep_hidden is None or len(all_hidden) in keep_hidden else None,
                        )
                    if decoder.training and decoder.layerdrop > 0.0 and torch.rand([]) < decoder.layerdrop:
                        continue
                    if checkpointing and not lower and not decoder_layer.training:
                        # Frozen upper layers sit in eval mode, where their own checkpointing is off; the adapters
                        # still need gradients through them, so checkpoint them here (no cache writes on replay).
                        hidden_states = self._gradient_checkpointing_func(
                            partial(
                                decoder_layer.__call__, **{_LAYER_CACHE_KWARG: None}, use_cache=False, **layer_kwargs
                            ),
                            hidden_states,
                        )
                    else:
                        hidden_states = decoder_layer(
                            hidden_states, **{_LAYER_CACHE_KWARG: cache}, use_cache=use_cache, **layer_kwargs
                        )

            if decoder.final_layer_norm is not None:
                hidden_states = decoder.final_layer_norm(hidden_states)
            if decoder.project_out is not None:
                hidden_states = decoder.project_out(hidden_states)
            if output_hidden_states:
                all_hidden += (hidden_states if keep_hidden is None or len(all_hidden) in keep_hidden else None,)
        finally:
            for hook in hooks:
                hook.remove()
        if output_attentions:
            all_attn = tuple(all_attn_list)
        return hidden_states, cache, all_hidden, all_attn

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        vision_hidden_states: torch.FloatTensor | None = None,
        vision_num_frames: int | None = None,
        vision_pooled_states: torch.FloatTensor | tuple[torch.FloatTensor, torch.FloatTensor] | None = None,
        **kwargs,
    ):
        r"""
        Caption videos (or images): from `pixel_values`, cached `vision_hidden_states` or cached `vision_pooled_states`
        (see `forward`). The vision tower runs once and every adapter's visual keys/values are computed once per call; they travel as a batch-first tensor (`visual_key_values`), so beam search and
        `num_return_sequences` repeat them instead of recomputing. Without `input_ids`, decoding starts from the text
        BOS token. All `GenerationMixin.generate` arguments (`num_beams`, `do_sample`, `top_p`, ...) apply.

        Prompts: `model.generate(**processor(videos=v, text=prompts))` works as it is. The processor writes training
        captions (`BOS prompt EOS`, right-padded, with `labels`), so here `labels` are dropped, each row's trailing EOS
        is stripped (decoding continues the prompt) and the rows are left-padded, so a row decodes the same in a batch
        as alone. Without `attention_mask`, padding is read off the pad token (as `GenerationMixin` does).
        """
        kwargs.pop("labels", None)  # a training batch from the processor; not a generation input
        visual_kv, split, _ = self._visual_inputs(
            pixel_values,
            vision_hidden_states,
            kwargs.pop("visual_key_values", None),
            kwargs.pop("visual_kv_split", None),
            vision_num_frames,
            vision_pooled_states,
        )
        batch = visual_kv.shape[0]
        generation_config = kwargs.get("generation_config") or self.generation_config
        text_config = self.config.text_config

        def token(name):
            value = kwargs.get(name, getattr(generation_config, name, None))
            return value if value is not None else getattr(text_config, name, None)

        if input_ids is None:
            input_ids = torch.full((batch, 1), token("bos_token_id"), dtype=torch.long, device=visual_kv.device)
            attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        else:
            input_ids, attention_mask = self._prompt_for_generation(
                input_ids, attention_mask, token("pad_token_id"), token("eos_token_id")
            )
        if input_ids.shape[0] != batch:
            raise ValueError(f"video batch {batch} != input_ids batch {input_ids.shape[0]}")
        return super().generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            visual_key_values=visual_kv,
            visual_kv_split=split,
            **kwargs,
        )

    @staticmethod
    def _prompt_for_generation(
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        pad_token_id: int | None,
        eos_token_id: int | list[int] | None,
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """Prompt rows (left- or right-padded, maybe ending in EOS) -> left-padded rows without a trailing EOS, and
        their attention mask. A one-token row is kept as it is (OPT's BOS is also its EOS)."""
        eos_ids = set(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]) - {None}
        if attention_mask is None:
            # GenerationMixin's rule: padding is inferable when the pad token occurs and is not an EOS token
            if pad_token_id is not None and pad_token_id not in eos_ids and (input_ids == pad_token_id).any():
                attention_mask = (input_ids != pad_token_id).long()
            else:
                attention_mask = torch.ones_like(input_ids)
        rows = []
        for i, (ids, mask) in enumerate(zip(input_ids, attention_mask.bool())):
            real = ids[mask]
            if real.numel() == 0:
                raise ValueError(f"prompt row {i} is empty (its attention_mask is all zeros)")
            if real.numel() > 1 and int(real[-1]) in eos_ids:
                real = real[:-1]
            rows.append(real)
        width = max(row.numel() for row in rows)
        fill = pad_token_id if pad_token_id is not None else (min(eos_ids) if eos_ids else 0)
        out = torch.full((len(rows), width), fill, dtype=input_ids.dtype, device=input_ids.device)
        mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype, device=input_ids.device)
        for i, row in enumerate(rows):
            out[i, width - row.numel() :] = row
            mask[i, width - row.numel() :] = 1
        return out, mask


# `save_pretrained` copies this file and its relative imports and writes `auto_map` (see `save_pretrained` above).
FrozenCaptionerForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = [
    "separable_pool",
    "FrozenCaptionerCausalLMOutputWithPast",
    "FrozenCaptionerGatedCrossAttentionLayer",
    "FrozenCaptionerPreTrainedModel",
    "FrozenCaptionerForConditionalGeneration",
]
