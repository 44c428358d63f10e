"""A tiny FrozenCaptioner learns to caption a few tiny synthetic clips (only the adapters train)."""

import pytest
import torch
from synthetic_captions import EXAMPLES, caption, train_adapters

from frozencaptioner.tiny import build_tiny_frozencaptioner


@pytest.mark.slow  # ~70 s on 2 cores; the default suite keeps the learning checks of test_frame_towers / test_motion
def test_tiny_model_learns_to_caption_synthetic_clips():
    torch.manual_seed(0)
    model, processor = build_tiny_frozencaptioner(seed=0, gate_init=1.0)
    before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch, first, last = train_adapters(model, processor, steps=150)
    assert last < 0.05 < first
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)  # towers untouched
    ids = model.generate(pixel_values=batch["pixel_values"], max_new_tokens=8)
    assert processor.batch_decode(ids) == [caption(c, d) for c, d in EXAMPLES]
