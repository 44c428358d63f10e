"""LoRA on the frozen towers through peft: train, save adapter, reload, merge."""

import torch
from peft import PeftModel, get_peft_model

from frozencaptioner.lora import frozen_tower_lora_config
from frozencaptioner.tiny import build_tiny_frozencaptioner
from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration


def test_lora_train_save_reload_merge(tmp_path):
    model, processor = build_tiny_frozencaptioner(seed=1)
    g = torch.Generator().manual_seed(0)
    batch = processor(videos=list(torch.randint(0, 255, (2, 6, 20, 20, 3), generator=g, dtype=torch.uint8).numpy()),
                      text=["a red bar moving left", "a blue ball"])  # fmt: skip
    peft_model = get_peft_model(model, frozen_tower_lora_config(model, r=4))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("vision_model" in n and "lora_A" in n for n in trainable)
    assert any("language_model" in n and "lora_B" in n for n in trainable)
    assert any("gated_cross_attn_layers" in n and "modules_to_save" in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)

    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(8):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    lora_b = [p for n, p in peft_model.named_parameters() if "vision_model" in n and "lora_B" in n][0]
    assert lora_b.abs().sum() > 0  # the vision LoRA actually trained

    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**batch).logits
    peft_model.save_pretrained(tmp_path / "lora")

    base, _ = build_tiny_frozencaptioner(seed=1)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "lora").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected)
        merged = reloaded.merge_and_unload()
        assert type(merged) is FrozenCaptionerForConditionalGeneration
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-5)
        assert merged.generate(**{k: batch[k] for k in ["pixel_values"]}, max_new_tokens=3).shape[0] == 2
