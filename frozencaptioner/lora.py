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
    """LoRA on TimeSformer's fused `qkv` projections and/or OPT's `q_proj`/`v_proj`, keeping every gated
    cross-attention adapter trainable and saved with the LoRA weights (`modules_to_save`).

    Adapters are named one by one: `modules_to_save` matches by name suffix, and wrapping the whole `ModuleList`
    would hide its indexing from the model's decoder loop.
    """
    patterns = ([r"vision_model\..*\.qkv"] if vision else []) + (
        [r"language_model\..*\.(q_proj|v_proj)"] if text else []
    )
    if not patterns:
        raise ValueError("enable LoRA on at least one tower (vision=True and/or text=True)")
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=r"^(" + "|".join(patterns) + r")$",
        modules_to_save=[f"gated_cross_attn_layers.{i}" for i in range(len(model.gated_cross_attn_layers))],
        **kwargs,
    )
