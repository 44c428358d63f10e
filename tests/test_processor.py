"""FrozenCaptionerProcessor: uniform frame sampling, VideoMAE-style pixels (TimeSformer; image towers: test_frame_towers.py),
OPT captions with explicit EOS."""

import numpy as np
import pytest
import torch
from PIL import Image

from frozencaptioner.tiny import gpt2_bpe_tokenizer, tiny_processor
from modeling_frozencaptioner import sample_frame_indices
from modeling_frozencaptioner.processing_frozencaptioner import _plain_size


def test_uniform_frame_sampling():
    assert sample_frame_indices(16, 4).tolist() == [2, 6, 10, 14]  # centre of each quarter
    assert sample_frame_indices(10, 1).tolist() == [5]
    assert sample_frame_indices(2, 4).tolist() == [0, 0, 1, 1]  # short clips repeat frames
    idx = sample_frame_indices(300, 8)
    assert np.all(np.diff(idx) == np.diff(idx)[0]) or np.ptp(np.diff(idx)) <= 1
    with pytest.raises(ValueError, match="empty clip"):
        sample_frame_indices(0, 4)


def test_video_pixels_follow_sampled_frames():
    processor = tiny_processor(num_frames=4)
    clip = np.zeros((16, 20, 30, 3), np.uint8)
    for i in range(16):
        clip[i] = i * 10  # frame value encodes its index
    pixels = processor(videos=[clip, clip[:2]])["pixel_values"]
    assert pixels.shape == (2, 4, 3, 16, 16)
    mean, std = 0.45, 0.225
    values = (pixels[0, :, 0, 0, 0] * std + mean) * 255
    torch.testing.assert_close(values, torch.tensor([20.0, 60.0, 100.0, 140.0]), atol=0.6, rtol=0)
    # a (frames, H, W, 3) array and a list of frames are one clip too
    assert processor(videos=clip)["pixel_values"].shape == (1, 4, 3, 16, 16)
    assert processor(videos=list(clip))["pixel_values"].shape == (1, 4, 3, 16, 16)
    assert processor(videos=[clip], num_frames=2)["pixel_values"].shape == (1, 2, 3, 16, 16)


def test_images_are_one_frame_videos():
    processor = tiny_processor()
    image = Image.fromarray(np.full((24, 32, 3), 200, np.uint8))
    pixels = processor(images=[image, np.asarray(image)])["pixel_values"]
    assert pixels.shape == (2, 1, 3, 16, 16)


def test_captions_have_explicit_eos_and_masked_padding():
    processor = tiny_processor()
    out = processor(text=["a man riding a bike", "a dog"])
    ids, mask, labels = out["input_ids"], out["attention_mask"], out["labels"]
    assert ids[:, 0].tolist() == [2, 2]  # BOS
    lengths = mask.sum(1)
    assert lengths.tolist() == [7, 4]
    assert ids[0, 6] == 2 and ids[1, 3] == 2  # EOS (same id as BOS in OPT)
    assert torch.all(ids[1, 4:] == 1) and torch.all(labels[1, 4:] == -100)
    assert torch.equal(labels[mask == 1], ids[mask == 1])
    assert processor.batch_decode(ids) == ["a man riding a bike", "a dog"]


def test_real_gpt2_bpe_tokenizer():
    processor = tiny_processor(tokenizer=gpt2_bpe_tokenizer())
    out = processor(text=["A man is riding a bicycle down the street."])
    ids = out["input_ids"][0]
    eos = processor.tokenizer.eos_token_id
    assert ids[0] == eos and ids[-1] == eos and len(ids) > 5
    assert processor.batch_decode(out["input_ids"]) == ["A man is riding a bicycle down the street."]


def test_max_length_truncates_but_keeps_eos():
    processor = tiny_processor()
    out = processor(text=[" ".join(["dog"] * 100)], max_length=10)
    assert out["input_ids"].shape == (1, 10) and out["input_ids"][0, -1] == 2


def test_bad_input_raises():
    processor = tiny_processor()
    with pytest.raises(ValueError, match="at least one"):
        processor()
    with pytest.raises(ValueError, match="not both"):
        processor(videos=[np.zeros((2, 8, 8, 3), np.uint8)], images=[np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="frames, H, W, 3"):
        processor(videos=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="empty clip"):
        processor(videos=[[]])
    with pytest.raises(ValueError, match="list of strings"):
        processor(text=[1, 2])


def test_set_image_size_keeps_the_resize_rule():
    """The paper's larger fine-tuning crop: short side resized to the crop (TimeSformer's rule), then cropped."""
    processor = tiny_processor()
    processor.set_image_size(24)
    pixels = processor(videos=[np.zeros((3, 30, 40, 3), np.uint8)])["pixel_values"]
    assert pixels.shape == (1, 4, 3, 24, 24)
    assert _plain_size(processor.video_processor.size) == {"shortest_edge": 24}
