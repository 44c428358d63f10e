"""Step 0 of training from pre-trained towers, and the paper's crops at TimeSformer-base width."""

import pytest
import torch
from transformers import OPTForCausalLM, TimesformerConfig, TimesformerForVideoClassification

from frozencaptioner.tiny import tiny_config
from modeling_frozencaptioner import FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration


def test_from_pretrained_backbones_loads_both_towers(tmp_path):
    config = tiny_config(vocab_size=50)
    torch.manual_seed(0)
    # the real video checkpoint is a TimesformerForVideoClassification (K400 head); AutoModel takes its backbone
    video = TimesformerForVideoClassification(TimesformerConfig(**{**config.vision_config.to_dict(), "num_labels": 3}))
    text = OPTForCausalLM(config.text_config)
    video.save_pretrained(tmp_path / "video")
    text.save_pretrained(tmp_path / "text")
    model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(
        str(tmp_path / "video"), str(tmp_path / "text"), adapter_layers=[1, 3], gate_init=0.0
    )
    assert model.config.adapter_layers == [1, 3] and model.config.gate_init == 0.0
    for name, tensor in video.timesformer.state_dict().items():
        assert torch.equal(model.vision_model.state_dict()[name], tensor), name
    for name, tensor in text.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[name], tensor), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
    ids = torch.tensor([[2, 5, 6, 7]])
    logits = model(pixel_values=torch.randn(1, 4, 3, 16, 16), input_ids=ids).logits
    assert torch.equal(logits, text.eval()(ids).logits)  # gate_init=0: exactly the pre-trained LM at step 0


def test_paper_crops_224_and_320_at_base_width():
    """TimeSformer-base geometry (patch 16, width 768; one layer to stay fast): 224 px pre-training crop and the
    320 px fine-tuning crop, 8 and 1 frames, agree with a tower built natively for that crop."""
    from test_modeling import _native_tower

    vision = TimesformerConfig(num_frames=8, num_hidden_layers=1)
    text = {"vocab_size": 50, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 64}
    model = FrozenCaptionerForConditionalGeneration(
        FrozenCaptionerConfig(vision_config=vision, text_config=text, adapter_layers=[1])
    ).eval()
    for frames, size in ((8, 224), (2, 320), (1, 320)):
        pixels = torch.randn(1, frames, 3, size, size)
        ours = model.get_video_features(pixels).last_hidden_state
        assert ours.shape == (1, 1 + frames * (size // 16) ** 2, 768)
        with torch.no_grad():
            native = _native_tower(model, frames, size)(pixels).last_hidden_state
        torch.testing.assert_close(ours, native, rtol=1e-4, atol=1e-4)


def _save_towers(tmp_path, text_dtype, vision_dtype=torch.float32):
    """A tiny TimeSformer (video-classification checkpoint) and a tiny OPT saved in the given dtypes, as
    `facebook/opt-1.3b` is stored in fp16 next to an fp32 TimeSformer."""
    config = tiny_config(vocab_size=50)
    torch.manual_seed(0)
    video = TimesformerForVideoClassification(TimesformerConfig(**{**config.vision_config.to_dict(), "num_labels": 3}))
    video.to(vision_dtype).save_pretrained(tmp_path / "video")
    OPTForCausalLM(config.text_config).to(text_dtype).save_pretrained(tmp_path / "text")
    return str(tmp_path / "video"), str(tmp_path / "text")


def _dtypes(model):
    return {p.dtype for p in model.parameters()} | {b.dtype for b in model.buffers() if b.is_floating_point()}


def _forward_and_generate(model):
    """No autocast: every matmul sees one dtype, or this raises `mat1 and mat2 must have the same dtype`."""
    video = torch.randn(2, 4, 3, 16, 16)
    out = model(pixel_values=video, input_ids=torch.tensor([[2, 5, 6], [2, 7, 8]]))
    assert torch.isfinite(out.logits.float()).all()
    ids = model.generate(pixel_values=video, max_new_tokens=3, do_sample=False)
    assert ids.shape[0] == 2 and ids.shape[1] >= 2


@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
def test_backbones_load_in_one_dtype(tmp_path, stored):
    """Issue 9: the step-0 model from an fp16/bf16-stored OPT was half fp16, half fp32 and crashed in generate()."""
    video_dir, text_dir = _save_towers(tmp_path, stored)
    default = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(video_dir, text_dir)
    assert _dtypes(default) == {torch.float32}
    _forward_and_generate(default.eval())
    for requested in (torch.bfloat16, "float16", torch.float32):
        model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(video_dir, text_dir, dtype=requested)
        want = getattr(torch, requested) if isinstance(requested, str) else requested
        assert _dtypes(model) == {want}, requested
        _forward_and_generate(model.eval())
    auto = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(video_dir, text_dir, dtype="auto")
    assert _dtypes(auto) == {stored}  # the text checkpoint's dtype, for every parameter
    _forward_and_generate(auto.eval())
    trainable = {n for n, p in auto.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
