"""LoRA on the frozen towers through peft (the paper names the frozen visual network as its main limitation).

```python
from peft import get_peft_model
from frozencaptioner.lora import frozen_tower_lora_config

peft_model = get_peft_model(model, frozen_tower_lora_config(model, r=8))  # LoRA in both towers + adapters trainable
... train ...
peft_model.save_pretrained("lora_out")          # LoRA weights + the gated cross-attention adapters
merged = PeftModel.from_pretrained(base, "lora_out").merge_and_unload()   # a plain FrozenCaptioner again
```
"""

from peft import LoraConfig


def frozen_tower_lora_config(
    model,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    vision: bool = True,
    text: bool = True,
    **kwargs,
) -> LoraConfig:
    """LoRA on the vision tower's attention projections (TimeSformer's and timm ViTs' fused `qkv`, CLIP's and
    SigLIP's `q_proj`/`v_proj`) and/or OPT's `q_proj`/`v_proj`, keeping every gated cross-attention adapter (and its
    frame time embeddings) trainable and saved with the LoRA weights (`modules_to_save`).

    Adapters are named one by one: `modules_to_save` matches by name suffix, and wrapping the whole `ModuleList`
    would hide its indexing from the model's decoder loop. A tower without attention projections (a CNN) cannot
    take `vision=True`.
    """
    import re

    patterns = ([r"vision_model\..*\.(qkv|q_proj|v_proj)"] if vision else []) + (
        [r"language_model\..*\.(q_proj|v_proj)"] if text else []
    )
    if not patterns:
        raise ValueError("enable LoRA on at least one tower (vision=True and/or text=True)")
    names = [name for name, _ in model.named_modules()]
    for pattern, tower in zip(patterns, ["vision" if vision else "text", "text"]):
        if not any(re.fullmatch(pattern, name) for name in names):
            raise ValueError(
                f"no attention projection in the {tower} tower matches {pattern!r} (vision={tower == 'vision'})"
            )
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=r"^(" + "|".join(patterns) + r")$",
        modules_to_save=[f"gated_cross_attn_layers.{i}" for i in range(len(model.gated_cross_attn_layers))],
        **kwargs,
    )
