"""FrozenCaptionerForConditionalGeneration: architecture, geometry, freezing, outputs, bad input."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import OPTForCausalLM, TimesformerModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from frozencaptioner.tiny import build_tiny_frozencaptioner, tiny_config
from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration
from modeling_frozencaptioner.modeling_frozencaptioner import separable_pool


def _inputs(batch=2, frames=4, size=16, length=6, vocab=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, frames, 3, size, size, generator=g)
    input_ids = torch.randint(4, vocab, (batch, length), generator=g)
    input_ids[:, 0] = 2
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -2:] = 0
    return pixel_values, input_ids, attention_mask


def _model(**overrides):
    model, _ = build_tiny_frozencaptioner(**overrides)
    return model.eval()


# ---------------------------------------------------------------- separable cross-attention axes
def test_tower_layout_to_frames_patches_and_pooling_axes():
    """Hand-built tower output in TimeSformer's `[CLS] + (h w t)` order: token 1 + s*T + t holds 100*s + t."""
    model = _model()
    frames, patches, dim = 3, 5, 2
    hidden = torch.full((1, 1 + patches * frames, dim), -1.0)
    for s in range(patches):
        for t in range(frames):
            hidden[0, 1 + s * frames + t] = 100.0 * s + t
    video = model._video_tokens(hidden, num_frames=frames)  # (B, t, s, D)
    assert video.shape == (1, frames, patches, dim)
    expected = torch.tensor([[100.0 * s + t for s in range(patches)] for t in range(frames)])
    assert torch.equal(video[0, :, :, 0], expected)
    time_tokens, space_tokens = separable_pool(video)
    # max over space for each frame t: the last patch; max over time for each patch s: the last frame
    assert torch.equal(time_tokens[0, :, 0], torch.tensor([100.0 * (patches - 1) + t for t in range(frames)]))
    assert torch.equal(space_tokens[0, :, 0], torch.tensor([100.0 * s + frames - 1 for s in range(patches)]))


def test_real_tower_tokens_follow_their_frame():
    """The (h w t) layout on a real tower: with its encoder layers removed (they mix frames), token (s, t) depends
    only on frame t, so changing frame 2's pixels changes exactly the tokens read as frame 2."""
    model = _model()
    vc = model.config.vision_config
    tower = TimesformerModel(type(vc)(**{**vc.to_dict(), "num_hidden_layers": 0})).eval()
    tower.load_state_dict(model.vision_model.state_dict(), strict=False)
    pixels = torch.randn(1, 4, 3, 16, 16)
    changed = pixels.clone()
    changed[:, 2] += 1.0
    a = model._video_tokens(tower(pixels).last_hidden_state, num_frames=4)
    b = model._video_tokens(tower(changed).last_hidden_state, num_frames=4)
    differs = (a - b).abs().amax(dim=(0, 2, 3)) > 1e-6  # per frame
    assert differs.tolist() == [False, False, True, False]


def test_separable_and_full_attention_costs_and_shapes():
    for kind in ("separable", "full"):
        model = _model(cross_attention=kind)
        pixel_values, input_ids, mask = _inputs()
        out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask)
        assert out.logits.shape == (2, 6, model.config.text_config.vocab_size)
        kv, split = model.compute_visual_key_values(model._video_tokens(out.video_hidden_states, 4))
        s = (16 // 4) ** 2
        assert split == ((4, s) if kind == "separable" else (4 * s,))
        assert kv.shape == (2, 2, 2, sum(split), model.config.adapter_hidden_size)


def test_adapter_equations_pre_norm_tanh_gates():
    model = _model(gate_type="vector", gate_init=0.3)
    adapter = model.gated_cross_attn_layers[0]
    with torch.no_grad():
        adapter.attn_gate.copy_(torch.linspace(-1, 1, adapter.attn_gate.numel()))
    h = torch.randn(2, 5, 32)
    video = torch.randn(2, 4, 16, 32)
    k, v, split = adapter.project_visual(video)
    xattn = adapter.cross_attn(adapter.cross_attn_layernorm(h), k, v, split)
    h1 = h + torch.tanh(adapter.attn_gate) * xattn
    h2 = h1 + torch.tanh(adapter.ffn_gate) * adapter.fc2(F.gelu(adapter.fc1(adapter.ffn_layernorm(h1))))
    torch.testing.assert_close(adapter(h, k, v, split), h2)


@pytest.mark.parametrize("gate_type, shape", [("vector", (32,)), ("scalar", (1,))])
def test_gate_init_is_explicit(gate_type, shape, tmp_path):
    model = _model(gate_type=gate_type, gate_init=1.0)
    for adapter in model.gated_cross_attn_layers:
        assert adapter.attn_gate.shape == shape
        assert torch.equal(adapter.attn_gate, torch.ones(shape)) and torch.equal(adapter.ffn_gate, torch.ones(shape))
    # a checkpoint without gates: they come back at gate_init, not at a generic init or garbage
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file(
        {k: v for k, v in state.items() if not k.endswith("_gate")},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    reloaded = FrozenCaptionerForConditionalGeneration.from_pretrained(tmp_path)
    for adapter in reloaded.gated_cross_attn_layers:
        assert torch.equal(adapter.attn_gate, torch.ones(shape)) and torch.equal(adapter.ffn_gate, torch.ones(shape))


def test_zero_gates_equal_bare_opt_exactly():
    model = _model(gate_init=0.0)
    pixel_values, input_ids, mask = _inputs()
    bare = OPTForCausalLM(model.config.text_config).eval()
    bare.load_state_dict(model.language_model.state_dict())
    ours = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask).logits
    assert torch.equal(ours, bare(input_ids=input_ids, attention_mask=mask).logits)
    # and the video matters once the gates open
    opened = _model(gate_init=1.0)
    opened.load_state_dict(
        model.state_dict() | {k: torch.ones_like(v) for k, v in model.state_dict().items() if k.endswith("_gate")}
    )
    other = pixel_values.flip(0)
    a = opened(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask).logits
    b = opened(pixel_values=other, input_ids=input_ids, attention_mask=mask).logits
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------- frames and crops
def _native_tower(model, num_frames, image_size):
    """A TimeSformer built natively for this geometry, carrying the model's weights (time / position embeddings
    resized exactly as HF TimeSformer resizes them at inference)."""
    vc = model.config.vision_config
    config = type(vc)(**{**vc.to_dict(), "num_frames": num_frames, "image_size": image_size})
    tower = TimesformerModel(config).eval()
    state = dict(model.vision_model.state_dict())
    state["embeddings.time_embeddings"] = F.interpolate(
        state["embeddings.time_embeddings"].transpose(1, 2), size=num_frames, mode="nearest"
    ).transpose(1, 2)
    pos = state["embeddings.position_embeddings"]
    grid, new = vc.image_size // vc.patch_size, image_size // vc.patch_size
    other = pos[:, 1:].transpose(1, 2).reshape(1, -1, grid, grid)
    other = F.interpolate(other, size=(new, new), mode="nearest").flatten(2).transpose(1, 2)
    state["embeddings.position_embeddings"] = torch.cat([pos[:, :1], other], dim=1)
    tower.load_state_dict(state)
    return tower


@pytest.mark.parametrize("frames, size", [(1, 16), (2, 16), (4, 16), (4, 24), (1, 24)])
def test_any_frame_count_and_crop_match_a_native_tower(frames, size):
    model = _model()  # built for 4 frames at 16 px
    pixels = torch.randn(2, frames, 3, size, size)
    ours = model.get_video_features(pixels)
    assert isinstance(ours, BaseModelOutputWithPooling)
    with torch.no_grad():
        native = _native_tower(model, frames, size)(pixels).last_hidden_state
    torch.testing.assert_close(ours.last_hidden_state, native, rtol=1e-5, atol=1e-5)
    assert model.config.vision_config.num_frames == 4 and model.config.vision_config.image_size == 16  # restored


def test_hf_tower_alone_is_silently_wrong_for_other_geometry():
    """Why the geometry context exists: the bare HF tower gives a different (wrong) answer without error."""
    model = _model()
    pixels = torch.randn(1, 2, 3, 16, 16)
    with torch.no_grad():
        bare = model.vision_model(pixels).last_hidden_state  # reshapes with num_frames=4
        native = _native_tower(model, 2, 16)(pixels).last_hidden_state
    assert bare.shape == native.shape and not torch.allclose(bare, native, atol=1e-3)


def test_images_are_one_frame_videos():
    model = _model()
    _, input_ids, mask = _inputs()
    images = torch.randn(2, 3, 16, 16)
    a = model(pixel_values=images, input_ids=input_ids, attention_mask=mask).logits
    b = model(pixel_values=images[:, None], input_ids=input_ids, attention_mask=mask).logits
    assert torch.equal(a, b)


def test_feature_cache_path_matches_pixels():
    model = _model()
    pixel_values, input_ids, mask = _inputs(frames=2)
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask)
    feats = model.get_video_features(pixel_values).last_hidden_state
    video = model._video_tokens(feats, num_frames=2)
    via_4d = model(vision_hidden_states=video, input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(via_4d, out.logits)
    full = model.get_video_features(pixel_values).last_hidden_state  # 3-D: the tower's own output, + frames
    via_3d = model(vision_hidden_states=full, vision_num_frames=2, input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(via_3d, out.logits)


def test_3d_vision_hidden_states_need_vision_num_frames():
    """Issue 9: the token count alone is ambiguous; a 32 px image (64 patches of 4 px) used to read as 4 frames of
    the 16 px crop. 3-D features without `vision_num_frames` are an error; 4-D ones need nothing."""
    model = _model()
    _, input_ids, mask = _inputs()
    image = torch.randn(2, 1, 3, 32, 32)
    feats = model.get_video_features(image).last_hidden_state  # (2, 1 + 64, D)
    with pytest.raises(ValueError, match="vision_num_frames"):
        model(vision_hidden_states=feats, input_ids=input_ids)
    with pytest.raises(ValueError, match="vision_num_frames"):
        model.generate(vision_hidden_states=feats, max_new_tokens=2)
    want = model(pixel_values=image, input_ids=input_ids, attention_mask=mask).logits
    got = model(vision_hidden_states=feats, vision_num_frames=1, input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want)
    as_4d = model._video_tokens(feats, num_frames=1)  # (2, 1, 64, D)
    torch.testing.assert_close(
        model(vision_hidden_states=as_4d, input_ids=input_ids, attention_mask=mask).logits, want
    )
    with pytest.raises(ValueError, match="do not split"):
        model(vision_hidden_states=feats, vision_num_frames=3, input_ids=input_ids)


# ---------------------------------------------------------------- freezing and cost
def test_only_adapters_train_and_towers_stay_in_eval(tmp_path):
    model = _model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
    assert trainable == {
        n for n, _ in model.gated_cross_attn_layers.named_parameters(prefix="gated_cross_attn_layers")
    }
    model.train()
    assert model.training and model.gated_cross_attn_layers.training
    assert not model.vision_model.training and not model.language_model.training
    assert not any(m.training for m in model.language_model.modules())
    model.save_pretrained(tmp_path)
    reloaded = FrozenCaptionerForConditionalGeneration.from_pretrained(tmp_path)
    assert {n for n, p in reloaded.named_parameters() if p.requires_grad} == trainable


def test_unfrozen_config_trains_everything():
    model = _model(freeze_vision_model=False, freeze_language_model=False)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert model.vision_model.training and model.language_model.training


def test_layers_below_first_adapter_run_without_autograd():
    model = _model()  # adapters before layers 2 and 3
    model.train()
    seen = {}
    layers = model.language_model.model.decoder.layers
    hooks = [
        layer.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o.requires_grad))
        for i, layer in enumerate(layers)
    ]
    pixel_values, input_ids, mask = _inputs()
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask, labels=input_ids)
    for h in hooks:
        h.remove()
    assert seen == {0: False, 1: False, 2: True, 3: True}
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gated_cross_attn_layers.parameters())
    assert all(p.grad is None for p in model.language_model.parameters())
    assert all(p.grad is None for p in model.vision_model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    pixel_values, input_ids, mask = _inputs()
    grads, calls = [], []
    for checkpointing in (False, True):
        model = _model()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()  # hooks only the text embeddings (TimeSformer's returns a tuple)
        model.train()
        counts = {"adapter": 0, "upper": 0, "lower": 0}
        layers = model.language_model.model.decoder.layers
        model.gated_cross_attn_layers[1].fc1.register_forward_pre_hook(
            lambda *a: counts.__setitem__("adapter", counts["adapter"] + 1)
        )
        layers[3].fc1.register_forward_pre_hook(lambda *a: counts.__setitem__("upper", counts["upper"] + 1))
        layers[0].fc1.register_forward_pre_hook(lambda *a: counts.__setitem__("lower", counts["lower"] + 1))
        model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask, labels=input_ids).loss.backward()
        grads.append([p.grad.clone() for p in model.gated_cross_attn_layers.parameters()])
        calls.append(counts)
    # recomputed in backward when checkpointing (submodule calls counted: hooks on the layer itself sit outside the
    # checkpoint): the adapter and the frozen upper layer, never the no-grad lower layer
    assert calls == [{"adapter": 1, "upper": 1, "lower": 1}, {"adapter": 2, "upper": 2, "lower": 1}]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- outputs
def test_loss_ignores_padding_labels():
    model = _model()
    pixel_values, input_ids, mask = _inputs()
    labels = input_ids.masked_fill(mask == 0, -100)
    loss = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask, labels=labels).loss
    logits = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask).logits
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, expected)


def test_output_conventions():
    model = _model()
    model.config.text_config._attn_implementation = "eager"
    pixel_values, input_ids, mask = _inputs()
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask, labels=input_ids,
                output_hidden_states=True, output_attentions=True)  # fmt: skip
    layers = model.config.text_config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
    assert out.attentions[0].shape == (2, 4, 6, 6)
    assert out.video_hidden_states.shape == (2, 1 + 16 * 4, 32)
    as_tuple = model(
        pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask, labels=input_ids, return_dict=False
    )
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], out.loss)
    torch.testing.assert_close(as_tuple[1], out.logits)


def test_strict_save_load_round_trip(tmp_path):
    model = _model()
    pixel_values, input_ids, mask = _inputs()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    reloaded, info = FrozenCaptionerForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set())
    a = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask).logits
    b = reloaded(pixel_values=pixel_values, input_ids=input_ids, attention_mask=mask).logits
    assert torch.equal(a, b)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "pixel_shape, message",
    [
        ((2, 16, 16), "rank 3"),
        ((2, 4, 3, 16, 16, 1), "rank 6"),
        ((2, 4, 1, 16, 16), "channels"),
        ((2, 5, 3, 16, 16), "supports 1 to 4"),
        ((2, 4, 3, 18, 16), "multiple of the patch"),
    ],
)
def test_bad_pixel_values_raise(pixel_shape, message):
    model = _model()
    _, input_ids, _ = _inputs()
    with pytest.raises(ValueError, match=message):
        model(pixel_values=torch.randn(*pixel_shape), input_ids=input_ids)


def test_bad_call_arguments_raise():
    model = _model()
    pixel_values, input_ids, _ = _inputs()
    with pytest.raises(ValueError, match="labels were given without text"):
        model(pixel_values=pixel_values, labels=input_ids)
    with pytest.raises(ValueError, match="exactly one of pixel_values"):
        model(input_ids=input_ids)
    with pytest.raises(ValueError, match="labels shape"):
        model(pixel_values=pixel_values, input_ids=input_ids, labels=input_ids[:, :3])
    with pytest.raises(ValueError, match="video batch"):
        model(pixel_values=pixel_values[:1], input_ids=input_ids)
    with pytest.raises(ValueError, match="out of range"):
        FrozenCaptionerForConditionalGeneration(tiny_config(adapter_layers=[9]))


def test_concurrent_calls_with_different_geometries_do_not_mix():
    """Known defect (shared/known_defects.md): `_vision_geometry` rewrote `num_frames` on the tower's (shared) config
    for the duration of a call, so a thread running another frame count at the same time corrupted the first call.
    Forced interleaving: thread A (4 frames) pauses inside the tower until thread B (1 frame) is inside too."""
    import threading

    model = _model()
    clips = {"A": torch.randn(2, 4, 3, 16, 16), "B": torch.randn(2, 1, 3, 16, 16)}
    with torch.no_grad():
        want = {name: model.get_video_features(clip).last_hidden_state for name, clip in clips.items()}
    b_inside, a_done = threading.Event(), threading.Event()
    public_frames = []

    def pause(module, args):
        public_frames.append(model.config.vision_config.num_frames)  # the model's own config never changes
        if threading.current_thread().name == "A":
            b_inside.wait(timeout=2)  # with the fix B cannot enter while A runs: A goes on after the timeout
        elif threading.current_thread().name == "B":
            b_inside.set()
            a_done.wait(timeout=10)

    got, errors = {}, {}

    def run(name):
        try:
            with torch.no_grad():
                got[name] = model.get_video_features(clips[name]).last_hidden_state
        except Exception as err:  # noqa: BLE001 - the broken version raises inside the reshape
            errors[name] = err
        finally:
            if name == "A":
                a_done.set()

    hook = model.vision_model.encoder.layer[0].register_forward_pre_hook(pause)
    try:
        threads = [threading.Thread(target=run, args=(name,), name=name) for name in ("A", "B")]
        threads[0].start()
        while not public_frames:  # A is inside the tower before B starts
            threads[0].join(0.01)
        threads[1].start()
        for thread in threads:
            thread.join(30)
    finally:
        hook.remove()
    assert not errors, errors
    for name in clips:
        torch.testing.assert_close(got[name], want[name])
    assert set(public_frames) == {4}, public_frames
    assert model.config.vision_config.num_frames == 4
