"""FrozenCaptioner remote-code folder: config, model and processor (imports only torch and transformers; timm only
through transformers, for a timm tower)."""

from .configuration_frozencaptioner import FrozenCaptionerConfig
from .modeling_frozencaptioner import (
    FrozenCaptionerCausalLMOutputWithPast,
    FrozenCaptionerForConditionalGeneration,
    FrozenCaptionerGatedCrossAttentionLayer,
    FrozenCaptionerPreTrainedModel,
)
from .processing_frozencaptioner import (
    FrozenCaptionerProcessor,
    load_tower_video_processor,
    sample_frame_indices,
    video_processor_for_tower,
)


def _register_local_auto_classes():
    """Let `AutoConfig/AutoModel/AutoProcessor.from_pretrained` find the installed classes without remote code."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    try:
        AutoConfig.register("frozencaptioner", FrozenCaptionerConfig)
        AutoModel.register(FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration)
        AutoModelForImageTextToText.register(FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration)
        AutoProcessor.register(FrozenCaptionerConfig, FrozenCaptionerProcessor)
    except ValueError:  # already registered (module reloaded)
        pass


_register_local_auto_classes()
