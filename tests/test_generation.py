"""generate(): greedy / beams / nucleus with the KV cache; vision tower and visual K/V computed once per call."""

import pytest
import torch
from synthetic_captions import train_adapters

from frozencaptioner.tiny import build_tiny_frozencaptioner


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained on the bar clips, so its captions depend on the video."""
    torch.manual_seed(0)
    model, processor = build_tiny_frozencaptioner(seed=0)
    batch, _, _ = train_adapters(model, processor, steps=120)
    return model, batch["pixel_values"], processor


@pytest.fixture(scope="module")
def model(trained):
    return trained[0]


def _video(pixels, batch=3, frames=4):
    """Trained-on clips (distinct captions), cycled to `batch`, at `frames` frames."""
    return pixels[torch.arange(batch) % len(pixels)][:, :frames]


def _count_calls(model):
    counts = {"vision": 0, "visual_kv": 0}
    hooks = [
        model.vision_model.register_forward_pre_hook(lambda *a: counts.__setitem__("vision", counts["vision"] + 1))
    ]
    for adapter in model.gated_cross_attn_layers:
        # the K/V projections run only in project_visual
        proj = getattr(adapter.cross_attn, "time_k_proj", None) or adapter.cross_attn.k_proj
        hooks.append(
            proj.register_forward_pre_hook(lambda *a: counts.__setitem__("visual_kv", counts["visual_kv"] + 1))
        )
    return counts, hooks


@pytest.mark.parametrize("frames", [1, 4])
def test_cached_and_uncached_greedy_agree(model, trained, frames):
    video = _video(trained[1], frames=frames)
    cached = model.generate(pixel_values=video, max_new_tokens=8, use_cache=True, min_new_tokens=8)
    uncached = model.generate(pixel_values=video, max_new_tokens=8, use_cache=False, min_new_tokens=8)
    assert cached.shape == (3, 9) and torch.equal(cached, uncached)
    assert torch.all(cached[:, 0] == model.config.text_config.bos_token_id)  # no input_ids: starts from BOS


def test_greedy_equals_step_by_step_argmax_of_full_forward(model, trained):
    video = _video(trained[1], batch=2)
    ids = model.generate(pixel_values=video, max_new_tokens=6, min_new_tokens=6)
    manual = torch.full((2, 1), 2)
    with torch.no_grad():
        for _ in range(6):
            logits = model(pixel_values=video, input_ids=manual, use_cache=False).logits[:, -1]
            logits[:, model.config.text_config.eos_token_id] = -float("inf")  # what min_new_tokens does
            manual = torch.cat([manual, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(ids, manual)


def test_video_changes_the_caption(model, trained):
    ids = model.generate(pixel_values=_video(trained[1], batch=4), max_new_tokens=8)
    assert len({tuple(row.tolist()) for row in ids}) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_beams": 3},
        {"num_beams": 3, "num_return_sequences": 2},
        {"do_sample": True, "top_p": 0.9, "num_return_sequences": 2},
    ],
)
def test_vision_tower_and_visual_kv_run_once_per_generate(model, trained, kwargs):
    counts, hooks = _count_calls(model)
    video = _video(trained[1], batch=2)
    try:
        ids = model.generate(pixel_values=video, max_new_tokens=5, min_new_tokens=5, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    assert ids.shape == (2 * kwargs.get("num_return_sequences", 1), 6)
    assert counts["vision"] == 1
    assert counts["visual_kv"] == len(model.gated_cross_attn_layers)  # once per adapter, not per step or per beam


def test_beam_search_matches_itself_without_cache(model, trained):
    video = _video(trained[1], batch=4)
    a = model.generate(pixel_values=video, max_new_tokens=5, num_beams=3, use_cache=True)
    b = model.generate(pixel_values=video, max_new_tokens=5, num_beams=3, use_cache=False)
    assert torch.equal(a, b)


def test_images_and_feature_cache_generate(model):
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    from_images = model.generate(pixel_values=images, max_new_tokens=4)
    feats = model.get_video_features(images[:, None]).last_hidden_state
    assert torch.equal(from_images, model.generate(vision_hidden_states=feats, vision_num_frames=1, max_new_tokens=4))


def test_generate_with_prompt_ids(model, trained):
    video = _video(trained[1], batch=2)
    prompt = torch.tensor([[2, 5], [2, 6]])
    ids = model.generate(pixel_values=video, input_ids=prompt, max_new_tokens=3, min_new_tokens=3)
    assert torch.equal(ids[:, :2], prompt) and ids.shape == (2, 5)
    with pytest.raises(ValueError, match="batch"):
        model.generate(pixel_values=video, input_ids=prompt[:1], max_new_tokens=2)


# ---------------------------------------------------------------- prompts (issue 9)
def _clips(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (6, 20, 20, 3), dtype=torch.uint8, generator=generator).numpy() for _ in range(n)]


PROMPTS = ["a red", "a blue ball moving", "the"]  # 2, 4 and 1 words: different token lengths


def test_prompted_generation_from_the_plain_processor_call(model, trained):
    """`model.generate(**processor(videos=v, text=prompts))`, nothing else: labels are dropped, each row's trailing
    EOS is stripped and the rows are left-padded, so every row decodes exactly as it does alone."""
    processor = trained[2]
    clips = _clips(3)
    inputs = processor(videos=clips, text=PROMPTS)
    assert "labels" in inputs and int(inputs["input_ids"][0, 3]) == model.config.text_config.eos_token_id
    batched = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6)
    width = batched.shape[1] - 6
    for i, (clip, prompt) in enumerate(zip(clips, PROMPTS)):
        alone = model.generate(**processor(videos=[clip], text=[prompt]), max_new_tokens=6, min_new_tokens=6)
        prompt_ids = processor(text=[prompt])["input_ids"][0, :-1]  # BOS prompt, without the EOS
        assert torch.equal(alone[0, : len(prompt_ids)], prompt_ids)  # the prompt is continued, not ended
        assert torch.equal(batched[i, width:], alone[0, len(prompt_ids) :]), (i, prompt)
        assert torch.equal(batched[i, width - len(prompt_ids) : width], prompt_ids)  # left-padded
        assert torch.all(batched[i, : width - len(prompt_ids)] == model.config.text_config.pad_token_id)
    texts = processor.batch_decode(batched)
    assert all(text.startswith(prompt) for text, prompt in zip(texts, PROMPTS)), texts


def test_generate_infers_the_attention_mask_from_the_pad_token(model, trained):
    """No attention_mask: padding is read off the pad id (today's code forced all ones and attended to padding)."""
    video = _video(trained[1], batch=2)
    pad = model.config.text_config.pad_token_id
    prompt = torch.tensor([[pad, pad, 2, 5], [2, 6, 7, 8]])  # left-padded
    mask = (prompt != pad).long()
    with_mask = model.generate(pixel_values=video, input_ids=prompt, attention_mask=mask, max_new_tokens=4,
                               min_new_tokens=4)  # fmt: skip
    without = model.generate(pixel_values=video, input_ids=prompt, max_new_tokens=4, min_new_tokens=4)
    assert torch.equal(with_mask, without)
    alone = model.generate(pixel_values=video[:1], input_ids=prompt[:1, 2:], max_new_tokens=4, min_new_tokens=4)
    assert torch.equal(without[0, 4:], alone[0, 2:])
