"""Frame-wise image towers (CLIP / SigLIP vision towers, timm ViT and CNN through `TimmWrapperModel`) and the pooled-token
input for training from cached features (issue 13, points 2 and 3 (model side))."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionConfig,
    OPTConfig,
    OPTForCausalLM,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    TimesformerConfig,
)

from frozencaptioner.tiny import FRAME_WISE_KINDS, VISION_KINDS, build_tiny_frozencaptioner, tiny_config
from modeling_frozencaptioner import (
    FrozenCaptionerConfig,
    FrozenCaptionerForConditionalGeneration,
    FrozenCaptionerProcessor,
    video_processor_for_tower,
)
from modeling_frozencaptioner.processing_frozencaptioner import _plain_size


pytest.importorskip("timm")  # the timm kinds; CI installs the `test` extra

IDS = torch.tensor([[2, 5, 6, 7, 8], [2, 9, 10, 11, 12]])


def _model(kind, **overrides):
    model, _ = build_tiny_frozencaptioner(vision_kind=kind, **overrides)
    return model.eval()


def _pixels(model, batch=2, frames=4, seed=0, distinct=False):
    """Random frames; `distinct`: each frame also gets its own colour offset, so frames differ in what they show, not
    only in noise (a frame-wise tower's max-pooled summary of two noise frames is nearly the same)."""
    size = model.config.image_size
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, frames, 3, size, size, generator=generator)
    return pixels + 2 * torch.randn(batch, frames, 3, 1, 1, generator=generator) if distinct else pixels


def _time_embeddings(model):
    embeddings = [layer.cross_attn.time_embeddings for layer in model.gated_cross_attn_layers]
    return [e for e in embeddings if e is not None]


def _rel(a, b):
    """Norm-wise relative error ||a - b|| / ||b||."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(scope="module")
def models():
    """One tiny model per frame-wise kind (eval mode, never modified by the tests that use it)."""
    return {kind: _model(kind) for kind in FRAME_WISE_KINDS}


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("kind", VISION_KINDS)
def test_config_of_every_tower_kind_round_trips(kind, tmp_path):
    config = tiny_config(vision_kind=kind)
    assert config.max_num_frames == 4 and config.vision_hidden_size == 32
    assert config.frame_wise_vision == (kind != "timesformer")
    assert config.image_size == (32 if kind == "timm_cnn" else 16)
    config.save_pretrained(tmp_path)
    loaded = FrozenCaptionerConfig.from_pretrained(tmp_path)
    assert type(loaded.vision_config) is type(config.vision_config)
    assert loaded.to_dict() == config.to_dict()


def test_old_config_json_without_the_new_fields_loads(tmp_path):
    """config.json files written before `max_num_frames` existed: the TimeSformer's num_frames is the maximum."""
    tiny_config(num_frames=6).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    for key in ("max_num_frames", "vision_hidden_size", "time_embedding_init_std"):
        del stored[key]
    path.write_text(json.dumps(stored))
    loaded = FrozenCaptionerConfig.from_pretrained(tmp_path)
    assert loaded.max_num_frames == loaded.num_frames == 6 and loaded.vision_hidden_size == 32
    assert FrozenCaptionerConfig(vision_config=CLIPVisionConfig()).max_num_frames == 8  # frame-wise default


def test_tower_kinds_and_frame_limits_are_checked():
    full = CLIPConfig(vision_config={"hidden_size": 48, "num_attention_heads": 4})
    config = FrozenCaptionerConfig(vision_config=full, text_config={"num_hidden_layers": 2})
    assert type(config.vision_config) is CLIPVisionConfig and config.vision_hidden_size == 48  # vision tower only
    assert FrozenCaptionerConfig(vision_config=full.to_dict()).vision_config.model_type == "clip_vision_model"
    with pytest.raises(ValueError, match="clip_vision_model"):
        FrozenCaptionerConfig(vision_config=OPTConfig())
    with pytest.raises(ValueError, match="exceeds the TimeSformer"):
        FrozenCaptionerConfig(vision_config=TimesformerConfig(num_frames=8), max_num_frames=9)
    with pytest.raises(ValueError, match="vision_hidden_size"):
        FrozenCaptionerConfig(vision_config=CLIPVisionConfig(), vision_hidden_size=64)
    # timm: the width is read off the architecture (built on the meta device), it is not in TimmWrapperConfig
    vision = tiny_config(vision_kind="timm_cnn").vision_config
    assert not hasattr(vision, "num_features")
    assert FrozenCaptionerConfig(vision_config=vision).vision_hidden_size == 32


# ---------------------------------------------------------------- tokens, captions, freezing
@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_frame_tokens_are_the_towers_patch_tokens_per_frame(kind, models):
    """Each frame through the bare tower: CLIP drops its CLS, timm's ViT its 2 prefix tokens (class + register), the
    CNN's (C, h, w) map becomes (h w) tokens; frame t of the clip is exactly image t."""
    model = models[kind]
    pixels = _pixels(model)
    ours = model.get_video_features(pixels).last_hidden_state
    assert ours.shape == (2, 4, 16, 32)
    assert torch.equal(model.get_video_features(pixels, return_dict=False)[0], ours)
    with torch.no_grad():
        for t in range(4):
            if kind.startswith("timm"):
                raw = model.vision_model.timm_model.forward_features(pixels[:, t])
                want = raw.flatten(2).transpose(1, 2) if kind == "timm_cnn" else raw[:, 2:]
                assert kind == "timm_cnn" or model.vision_model.timm_model.num_prefix_tokens == 2
            else:
                raw = model.vision_model(pixel_values=pixels[:, t]).last_hidden_state
                want = raw[:, 1:] if kind == "clip" else raw
            torch.testing.assert_close(ours[:, t], want, rtol=1e-5, atol=1e-5)


def test_unreadable_timm_output_is_a_clear_error(models):
    """A timm model whose features are neither (N, prefix + s, D) tokens nor a (N, D, h, w) map."""
    with pytest.raises(ValueError, match="cannot read patch tokens"):
        models["timm_cnn"]._frame_tokens(torch.zeros(2, 32))  # already pooled
    with pytest.raises(ValueError, match="cannot read patch tokens"):
        models["timm_vit"]._frame_tokens(torch.zeros(2, 5, 7))  # wrong width


@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_caption_loss_trains_only_the_adapters_and_their_time_embeddings(kind):
    model = _model(kind)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
    assert {f"gated_cross_attn_layers.{i}.cross_attn.time_embeddings" for i in range(2)} <= trainable
    model.train()
    assert not model.vision_model.training and not model.language_model.training
    out = model(pixel_values=_pixels(model), input_ids=IDS, labels=IDS)
    assert out.logits.shape == (2, 5, model.config.text_config.vocab_size) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gated_cross_attn_layers.parameters())
    assert all(p.grad is None for p in model.vision_model.parameters())
    assert all(p.grad is None for p in model.language_model.parameters())


@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
@pytest.mark.parametrize("cross_attention", ["separable", "full"])
def test_reversing_the_frames_changes_the_logits(kind, cross_attention):
    """A frame-wise tower sees each frame alone, and pooling + attention ignore token order: without time embeddings
    the model is exactly blind to frame order (the time issue's bug). With them (their init), reversed frames give
    other logits. float64, so that neither is rounding noise: blind < 1e-12, ordered > 1e-6 (the untrained adapters'
    attention is nearly uniform, which keeps the step-0 effect small; training sharpens it, see the next test)."""
    model = _model(kind, cross_attention=cross_attention).double()
    pixels = _pixels(model, distinct=True).double()
    with torch.no_grad():
        forward = model(pixel_values=pixels, input_ids=IDS).logits
        reversed_ = model(pixel_values=pixels.flip(1), input_ids=IDS).logits
        for embeddings in _time_embeddings(model):
            embeddings.zero_()
        blind = model(pixel_values=pixels, input_ids=IDS).logits
        blind_reversed = model(pixel_values=pixels.flip(1), input_ids=IDS).logits
    assert (blind - blind_reversed).abs().max() < 1e-12
    assert (forward - reversed_).abs().max() > 1e-6


def test_frame_order_is_learnable_from_a_frozen_image_tower():
    """8 clips and their reversals captioned "left" / "right": the adapters learn to tell them apart through the time
    embeddings (a model without them gives a clip and its reversal the same logits, the test above, so it scores 0.5
    and its loss stays >= ln 2)."""
    model, processor = build_tiny_frozencaptioner(vision_kind="clip", seed=0)
    left, right = processor.tokenizer.convert_tokens_to_ids(["left", "right"])
    clips = _pixels(model, batch=8, seed=1)
    pixels = torch.cat([clips, clips.flip(1)])
    ids = torch.tensor([[2, 4, left]] * 8 + [[2, 4, right]] * 8)
    labels = ids.masked_fill(torch.arange(3) < 2, -100)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(30):
        loss = model(pixel_values=pixels, input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model.eval()(pixel_values=pixels, input_ids=ids[:, :2]).logits[:, -1]
    predicted = torch.where(logits[:, left] > logits[:, right], left, right)
    accuracy = (predicted == ids[:, 2]).float().mean().item()
    assert accuracy >= 0.9 and loss.item() < 0.69, (accuracy, loss.item())


# ---------------------------------------------------------------- images, generation, attention kinds
@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_images_are_one_frame_videos_and_generate_encodes_once(kind, models):
    model = models[kind]
    size = model.config.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    as_images = model(pixel_values=images, input_ids=IDS).logits
    torch.testing.assert_close(as_images, model(pixel_values=images[:, None], input_ids=IDS).logits, rtol=0, atol=0)
    features = model.get_video_features(images).last_hidden_state  # (B, 1, s, D): 4-D needs no frame count
    torch.testing.assert_close(model(vision_hidden_states=features, input_ids=IDS).logits, as_images, rtol=0, atol=0)
    calls = []
    hook = model.vision_model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        ids = model.generate(pixel_values=_pixels(model), max_new_tokens=4, min_new_tokens=4, num_beams=2)
        assert len(calls) == 1 and ids.shape == (2, 5)  # frames folded into one tower batch, encoded once
        assert model.generate(pixel_values=images, max_new_tokens=3).shape[0] == 2
    finally:
        hook.remove()


@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_separable_and_full_cross_attention_shapes(kind):
    for cross_attention, split in (("separable", (4, 16)), ("full", (64,))):
        model = _model(kind, cross_attention=cross_attention)
        video = model.get_video_features(_pixels(model)).last_hidden_state  # (B, t, s, D)
        keys_values, got = model.compute_visual_key_values(video)
        assert got == split and keys_values.shape == (2, 2, 2, sum(split), model.config.adapter_hidden_size)


def test_other_crops_and_fixed_size_timm_vits(models):
    """CLIP / SigLIP interpolate their position embeddings for other crops (as their own `interpolate_pos_encoding`);
    a fixed-size timm ViT refuses them with a clear error; the CNN takes any size."""
    model = models["clip"]
    pixels = torch.randn(1, 2, 3, 24, 24)
    with torch.no_grad():
        want = model.vision_model(pixel_values=pixels[:, 1], interpolate_pos_encoding=True).last_hidden_state[:, 1:]
    torch.testing.assert_close(model.get_video_features(pixels).last_hidden_state[:, 1], want)
    with pytest.raises(ValueError, match="dynamic_img_size"):
        models["timm_vit"](pixel_values=pixels, input_ids=IDS[:1])
    assert models["timm_cnn"].get_video_features(torch.randn(1, 2, 3, 48, 48)).last_hidden_state.shape == (
        1,
        2,
        36,
        32,
    )
    with pytest.raises(ValueError, match="supports 1 to 4"):
        models["siglip"](pixel_values=torch.randn(1, 5, 3, 16, 16), input_ids=IDS[:1])


# ---------------------------------------------------------------- pooled tokens (training from cached features)
def _loss_and_adapter_grads(model, **visual):
    model.zero_grad()
    out = model(input_ids=IDS, labels=IDS, **visual)
    out.loss.backward()
    return out.logits.detach(), [p.grad.clone() for p in model.gated_cross_attn_layers.parameters()]


@pytest.mark.parametrize("kind", VISION_KINDS)
def test_pooled_tokens_give_the_logits_and_gradients_of_pixels(kind):
    """`get_pooled_video_features` (t + s tokens) -> `vision_pooled_states`: the same logits and adapter gradients as
    pixels (fp32: rel 1e-5), also from an fp16 copy (rel 1e-3), also as the (time, space) pair; generate agrees."""
    model = _model(kind)
    model.train()  # training mode: dropout is 0 in the tiny configs, towers stay in eval
    pixels = _pixels(model)
    want_logits, want_grads = _loss_and_adapter_grads(model, pixel_values=pixels)
    pooled = model.get_pooled_video_features(pixels)
    assert pooled.shape == (2, 4 + 16, 32) and not pooled.requires_grad
    flat = torch.cat([g.flatten() for g in want_grads])
    for cache, tolerance in ((pooled, 1e-5), (pooled.half(), 1e-3)):
        logits, grads = _loss_and_adapter_grads(model, vision_pooled_states=cache, vision_num_frames=4)
        assert _rel(logits, want_logits) <= tolerance, (cache.dtype, _rel(logits, want_logits))
        # the adapters' gradient vector (fp16 rounding, 2^-11 relative, is amplified on the few tensors whose
        # gradient is nearly cancelled, so the per-tensor error is not the measure)
        error = _rel(torch.cat([g.flatten() for g in grads]), flat)
        assert error <= tolerance, (cache.dtype, error)
    pair_logits, _ = _loss_and_adapter_grads(model, vision_pooled_states=(pooled[:, :4], pooled[:, 4:]))
    assert _rel(pair_logits, want_logits) <= 1e-5
    model.eval()
    ids = model.generate(pixel_values=pixels, max_new_tokens=4, min_new_tokens=4)
    assert torch.equal(ids, model.generate(vision_pooled_states=pooled, vision_num_frames=4, max_new_tokens=4,
                                           min_new_tokens=4))  # fmt: skip
    one_frame = model.get_pooled_video_features(pixels[:, 0])  # images: 1 + s tokens
    torch.testing.assert_close(
        model(vision_pooled_states=one_frame, vision_num_frames=1, input_ids=IDS).logits,
        model(pixel_values=pixels[:, 0], input_ids=IDS).logits,
    )


def test_pooled_tokens_refuse_what_they_cannot_stand_for():
    model = _model("siglip")
    pooled = model.get_pooled_video_features(_pixels(model))
    with pytest.raises(ValueError, match="vision_num_frames"):
        model(vision_pooled_states=pooled, input_ids=IDS)
    with pytest.raises(ValueError, match="no space tokens"):
        model(vision_pooled_states=pooled, vision_num_frames=20, input_ids=IDS)
    with pytest.raises(ValueError, match=r"\(batch, n, 32\)"):
        model(vision_pooled_states=pooled[..., :16], vision_num_frames=4, input_ids=IDS)
    with pytest.raises(ValueError, match="exactly one of"):
        model(pixel_values=_pixels(model), vision_pooled_states=pooled, vision_num_frames=4, input_ids=IDS)
    too_many = torch.randn(2, 5 + 16, 32)  # 5 frames > max_num_frames = 4 time embeddings
    with pytest.raises(ValueError, match="max_num_frames"):
        model(vision_pooled_states=too_many, vision_num_frames=5, input_ids=IDS)
    full = _model("siglip", cross_attention="full")
    for call in (lambda: full.get_pooled_video_features(_pixels(full)),
                 lambda: full(vision_pooled_states=pooled, vision_num_frames=4, input_ids=IDS)):  # fmt: skip
        with pytest.raises(ValueError, match="full cross-attention"):
            call()
    unfrozen = _model("timesformer", freeze_vision_model=False)
    with pytest.raises(ValueError, match="trainable parameters"):
        unfrozen.get_pooled_video_features(_pixels(unfrozen))
    with pytest.raises(ValueError, match="trainable parameters"):  # the cache would skip the tower's gradients
        unfrozen(vision_pooled_states=torch.randn(2, 20, 32), vision_num_frames=4, input_ids=IDS)
    with torch.no_grad():  # inference from a cache is fine
        unfrozen(vision_pooled_states=torch.randn(2, 20, 32), vision_num_frames=4, input_ids=IDS)


# ---------------------------------------------------------------- pre-trained towers (step 0 of training)
def _save_vision_checkpoint(kind, path):
    """The tower as a Hub checkpoint of its kind stores it: a full CLIPModel / SiglipModel (+ its image processor, with
    a non-default mean so the test can see it is read), a timm export (timm's own `save_for_hf`, `pretrained_cfg`
    inside), a `TimmWrapperModel.save_pretrained` folder. Returns the vision tower's state dict."""
    torch.manual_seed(0)
    vision = tiny_config(vision_kind=kind).vision_config
    text = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
            "intermediate_size": 37}  # fmt: skip
    mean = [0.1, 0.2, 0.3]
    if kind in ("clip", "siglip"):
        full_cls, config_cls = (CLIPModel, CLIPConfig) if kind == "clip" else (SiglipModel, SiglipConfig)
        full = full_cls(config_cls(vision_config=vision.to_dict(), text_config=text))
        full.save_pretrained(path)
        size = 16
        if kind == "clip":
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                           image_mean=mean)  # fmt: skip
        else:
            processor = SiglipImageProcessor(size={"height": size, "width": size}, image_mean=mean)
        processor.save_pretrained(path)
        return full.vision_model.state_dict()
    from transformers import AutoModel

    tower = AutoModel.from_config(vision)
    if kind == "timm_vit":
        from timm.models import save_for_hf

        pretrained_cfg = {**vision.pretrained_cfg, "mean": mean}
        save_for_hf(tower.timm_model, path, model_config={"pretrained_cfg": pretrained_cfg},
                    model_args=vision.model_args, safe_serialization=True)  # fmt: skip
    else:
        tower.config.pretrained_cfg = {**vision.pretrained_cfg, "mean": mean}
        tower.save_pretrained(path)
    return {f"timm_model.{k}": v for k, v in tower.timm_model.state_dict().items()}


@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_from_pretrained_backbones_takes_every_tower_kind(kind, tmp_path):
    """A full CLIP / SigLIP checkpoint loads only its vision tower; timm exports load (their `model_args` carry a
    `num_classes` that transformers' wrapper would otherwise pass twice). One dtype (issue 9): an fp16-stored OPT gives
    an all-fp32 model by default and an all-fp16 one with dtype="auto". The processor reads the tower's own mean."""
    source = _save_vision_checkpoint(kind, tmp_path / "vision")
    OPTForCausalLM(tiny_config().text_config).half().save_pretrained(tmp_path / "text")
    vision_dir, text_dir = str(tmp_path / "vision"), str(tmp_path / "text")
    model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(vision_dir, text_dir, max_num_frames=3)
    assert model.config.frame_wise_vision and model.config.max_num_frames == 3
    state = model.vision_model.state_dict()
    assert set(state) == set(source)
    for name, tensor in source.items():
        assert torch.equal(state[name].float(), tensor.float()), name
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
    auto = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(vision_dir, text_dir, dtype="auto")
    assert {p.dtype for p in auto.parameters()} == {torch.float16}
    processor = FrozenCaptionerProcessor.from_pretrained_backbones(vision_dir, text_dir, num_frames=3)
    assert list(processor.video_processor.image_mean) == pytest.approx([0.1, 0.2, 0.3])
    clip = np.random.default_rng(0).integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    pixels = processor(videos=[clip])["pixel_values"]
    assert pixels.shape == (1, 3, 3, model.config.image_size, model.config.image_size)
    for m in (model.eval(), auto.eval()):
        ids = m.generate(pixel_values=pixels, max_new_tokens=3, do_sample=False)
        assert ids.shape[0] == 1


# ---------------------------------------------------------------- the processor: the tower's own preprocessing
def _tower_image_processor(kind, vision_config):
    if kind == "clip":
        return CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    if kind == "siglip":
        return SiglipImageProcessor(size={"height": 16, "width": 16})
    from transformers import TimmWrapperImageProcessor

    return TimmWrapperImageProcessor(pretrained_cfg=vision_config.pretrained_cfg)


@pytest.mark.parametrize("kind", FRAME_WISE_KINDS)
def test_processor_preprocesses_frames_as_the_towers_own_image_processor(kind, tmp_path):
    """Every frame's pixels equal the tower's own image processor on that frame (CLIP / SigLIP: its mean, std, resize
    rule; timm: its pretrained_cfg's crop_pct, interpolation, mean, std), not VideoMAE's; saved with the processor."""
    _, processor = build_tiny_frozencaptioner(vision_kind=kind)
    vision = tiny_config(vision_kind=kind).vision_config
    image_processor = _tower_image_processor(kind, vision)
    from_image_processor = video_processor_for_tower(vision, image_processor=image_processor)
    assert from_image_processor.to_dict() == processor.video_processor.to_dict()  # defaults = the tower's processor
    # timm centre-crops with torchvision (offset round(margin / 2)), transformers with margin // 2: a one-pixel shift
    # when the resized margin is odd, so the timm kinds compare on square frames (even margins)
    y, x = np.mgrid[0:40, 0 : (40 if kind.startswith("timm") else 48)]
    clip = np.stack([np.stack([(x * 5 + t * 9) % 256, (y * 6) % 256, (x + y) * 2 % 256], -1) for t in range(4)])
    clip = clip.astype(np.uint8)  # smooth-ish frames: resampling filters agree up to rounding
    ours = processor(videos=[clip])["pixel_values"][0]  # (t, 3, H, W)
    theirs = torch.stack([image_processor(images=frame, return_tensors="pt")["pixel_values"][0] for frame in clip])
    assert ours.shape == theirs.shape
    # torchvision on uint8 tensors vs timm's PIL transforms (timm) differ by resampling rounding only
    tolerance = 0.05 if kind.startswith("timm") else 1e-4
    assert (ours - theirs).abs().mean() < tolerance / 5 and (ours - theirs).abs().max() < tolerance * 4
    flat = np.full((2, 30, 30, 3), 200, np.uint8)  # a flat frame isolates the normalisation exactly
    mean, std = np.array(processor.video_processor.image_mean), np.array(processor.video_processor.image_std)
    expected = torch.tensor((200 / 255 - mean) / std, dtype=torch.float32)
    torch.testing.assert_close(processor(videos=[flat])["pixel_values"][0, 0, :, 5, 5], expected, rtol=0, atol=1e-5)
    processor.save_pretrained(tmp_path)
    reloaded = FrozenCaptionerProcessor.from_pretrained(tmp_path)
    assert torch.equal(reloaded(videos=[clip])["pixel_values"][0], ours)
    # another crop (the paper fine-tunes at 320-380): the tower's resize rule, scaled
    reloaded.set_image_size(24)
    assert reloaded(videos=[clip])["pixel_values"].shape[-2:] == (24, 24)
    resize = {
        "clip": {"shortest_edge": 24},
        "siglip": {"height": 24, "width": 24},
        "timm_vit": {"shortest_edge": 25},
        "timm_cnn": {"shortest_edge": 27},
    }[kind]  # timm: crop_pct 0.9 / 0.875 (17 / 16, 36 / 32 px)
    assert _plain_size(reloaded.video_processor.size) == resize


# ---------------------------------------------------------------- remote code
def test_every_tower_kind_reloads_as_remote_code_in_a_fresh_process(tmp_path):
    """Each kind saved with plain save_pretrained, loaded with AutoModel / AutoProcessor(trust_remote_code=True) in a
    clean offline process (the installed package hidden): same logits and pixels. The TimeSformer folder loads and runs
    with timm unimportable (the folder needs only torch + transformers; transformers' remote-code loader imports every
    package a file names outside `try` / `if is_*_available()` blocks); timm towers get timm through transformers."""
    clip = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    for kind in VISION_KINDS:  # timesformer first: the subprocess checks timm is still unimported after it
        model, processor = build_tiny_frozencaptioner(vision_kind=kind, seed=1)
        model.save_pretrained(tmp_path / kind)
        processor.save_pretrained(tmp_path / kind)
        batch = processor(videos=[clip], text=["a red bar"])
        with torch.no_grad():
            logits = model.eval()(**batch).logits
        torch.save({"batch": dict(batch), "logits": logits}, tmp_path / kind / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        from transformers import AutoModel, AutoProcessor
        sys.modules["timm"] = None  # from here the TimeSformer folder loads as if timm were not installed
        clip = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
        for kind in {list(VISION_KINDS)!r}:
            if kind != "timesformer" and "timm" in sys.modules and sys.modules["timm"] is None:
                del sys.modules["timm"]  # timm towers: transformers' TimmWrapper imports timm
            folder = {str(tmp_path)!r} + "/" + kind
            model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
            expected = torch.load(folder + "/expected.pt")
            batch = processor(videos=[clip], text=["a red bar"])
            assert torch.equal(batch["pixel_values"], expected["batch"]["pixel_values"]), kind
            with torch.no_grad():
                assert torch.equal(model(**batch).logits, expected["logits"]), kind
        assert "modeling_frozencaptioner" not in sys.modules, "installed package was imported"
        assert "timm" in sys.modules
        print("OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-1000:], result.stderr[-3000:])
    assert "OK" in result.stdout
