"""Save a model + processor in the Hub remote-code format (config.json `auto_map`, the `.py` files, safetensors)."""

import os

from modeling_frozencaptioner import (
    FrozenCaptionerConfig,
    FrozenCaptionerForConditionalGeneration,
    FrozenCaptionerProcessor,
)


MODEL_CLASS = "modeling_frozencaptioner.FrozenCaptionerForConditionalGeneration"
AUTO_MAP = {
    "AutoConfig": "configuration_frozencaptioner.FrozenCaptionerConfig",
    "AutoModel": MODEL_CLASS,
    "AutoModelForImageTextToText": MODEL_CLASS,
    "AutoProcessor": "processing_frozencaptioner.FrozenCaptionerProcessor",
}


def save_hub_format(
    model: FrozenCaptionerForConditionalGeneration,
    processor: FrozenCaptionerProcessor | None,
    save_dir: str | os.PathLike,
    **save_kwargs,
) -> str:
    """`save_pretrained` with the classes registered for the auto classes, so the folder loads with
    `AutoModel/AutoModelForImageTextToText/AutoProcessor.from_pretrained(dir, trust_remote_code=True)`.

    `register_for_auto_class` records one auto class per model class, so `AutoModelForImageTextToText` is added to
    `auto_map` by hand. `save_kwargs` go to `model.save_pretrained` (e.g. `state_dict=`, `is_main_process=`).
    """
    save_dir = os.fspath(save_dir)
    FrozenCaptionerConfig.register_for_auto_class()
    type(model).register_for_auto_class("AutoModel")
    model.config.auto_map = {
        **(getattr(model.config, "auto_map", None) or {}),
        **{k: v for k, v in AUTO_MAP.items() if k != "AutoProcessor"},
    }
    model.save_pretrained(save_dir, safe_serialization=True, **save_kwargs)
    if processor is not None:
        type(processor).register_for_auto_class("AutoProcessor")
        processor.save_pretrained(save_dir)
    return save_dir
