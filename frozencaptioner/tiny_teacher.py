"""A tiny but real BLIP image captioner, built offline, for tests and smoke runs.

`build_tiny_blip(save_dir)` writes a randomly initialised `BlipForConditionalGeneration` (hidden size 32, one
layer per tower) plus a `BlipProcessor` (a `BlipImageProcessor` at 320x320, the pseudolabeling resolution, and a
WordPiece `BertTokenizer` backed by the `tokenizers` library) into `save_dir`, so that
`AutoProcessor.from_pretrained(save_dir)` / `AutoModelForImageTextToText.from_pretrained(save_dir)` work with
`HF_HUB_OFFLINE=1`. It stands in for `Salesforce/blip-image-captioning-large` (same classes, same special-token
layout: BLIP starts decoding from a `[DEC]` bos token and stops at `[SEP]`).

`build_blip_large_shaped()` builds a randomly initialised model with the shapes of
`Salesforce/blip-image-captioning-large` (`blip_large_config()`, typed in by hand: the Hub is unreachable here) and
a processor with its vocabulary size and special-token ids, for throughput benchmarks
(`benchmarks/bench_pseudolabel.py`).
"""

import os


# Special tokens in BERT order, then BLIP's decoder-start token. The real BLIP tokenizer is bert-base-uncased
# (`[PAD]`=0, `[SEP]`=102) with `[DEC]` appended as bos (30522); BlipTextConfig's bos/sep/pad ids must point at them.
_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
_WORDS = (
    "a an the of in on at with and is are man woman person people child dog cat car bike road street tree trees "
    "grass field water sky cloud building house room table chair kitchen food plate cup hand hands shirt red blue "
    "green white black yellow small large big young old riding walking standing sitting playing holding cooking "
    "looking running driving cutting making video screen image picture close up view group two three bird horse "
    "ball game player team city night day light snow beach sea boat train bus"
).split()

TINY_IMAGE_SIZE = 320


def build_tiny_blip(save_dir: str, image_size: int = TINY_IMAGE_SIZE, seed: int = 0) -> str:
    """Build a tiny random `BlipForConditionalGeneration` + `BlipProcessor` and `save_pretrained` them.

    Args:
        save_dir (`str`): directory to write `config.json`, `model.safetensors`, `generation_config.json`,
            processor and tokenizer files into. Created if missing.
        image_size (`int`, *optional*, defaults to 320): vision tower input size; the processor resizes to it.
        seed (`int`, *optional*, defaults to 0): weight-init seed, so two builds are identical.

    Returns:
        `str`: `save_dir`.
    """
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        GenerationConfig,
    )

    os.makedirs(save_dir, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(_SPECIAL_TOKENS + _WORDS)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", model_max_length=64)
    assert tokenizer.convert_tokens_to_ids("[DEC]") == 5 and tokenizer.sep_token_id == 3

    text_config = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=vocab["[DEC]"],
        eos_token_id=vocab["[SEP]"],
        sep_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
    )
    vision_config = dict(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=32,  # 320 px -> 10x10 patches: fast on CPU
    )
    config = BlipConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        max_new_tokens=20,
        bos_token_id=vocab["[DEC]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
    )
    image_processor = BlipImageProcessor(
        size={"height": image_size, "width": image_size},
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        do_convert_rgb=True,
    )
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(save_dir)
    processor.save_pretrained(save_dir)
    return save_dir


def blip_large_config():
    """`BlipConfig` with the sizes of `Salesforce/blip-image-captioning-large`: vision tower ViT-L/16 (hidden 1024,
    24 layers, 16 heads, MLP 4096, trained at 384 px), text decoder BERT-base (hidden 768, 12 layers, 12 heads,
    MLP 3072, vocabulary 30524 = bert-base-uncased + `[DEC]` + one more, cross-attending to the 1024-wide image
    tokens). transformers' `BlipConfig()` defaults are the base model's (ViT-B, 8 text heads), hence by hand."""
    from transformers import BlipConfig

    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=384, patch_size=16, projection_dim=512, layer_norm_eps=1e-5)  # fmt: skip
    text = dict(vocab_size=30524, hidden_size=768, encoder_hidden_size=1024, intermediate_size=3072,
                num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512, layer_norm_eps=1e-12,
                bos_token_id=30522, eos_token_id=2, sep_token_id=102, pad_token_id=0)  # fmt: skip
    return BlipConfig(vision_config=vision, text_config=text, projection_dim=512)


def build_blip_large_shaped(processor_dir: str, image_size: int = 320, seed: int = 0):
    """Random-weight BLIP-Large-shaped `BlipForConditionalGeneration` (in memory, ~470M parameters) and a
    `BlipProcessor` resizing to `image_size` (saved to `processor_dir`), with bert-base-uncased's special-token
    ids (`[PAD]`=0, `[UNK]`=100, `[CLS]`=101, `[SEP]`=102, `[MASK]`=103, `[DEC]`=30522) and filler word pieces
    elsewhere. Returns `(model, processor)`."""
    import torch
    from transformers import BertTokenizer, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    config = blip_large_config()
    special = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 30522: "[DEC]"}
    words = [
        special.get(i, _WORDS[i % len(_WORDS)] if i < 1000 else f"w{i}") for i in range(config.text_config.vocab_size)
    ]
    seen, vocab = set(), {}
    for i, w in enumerate(words):  # filler words repeat below id 1000: make them unique
        w = w if w not in seen else f"{w}{i}"
        seen.add(w)
        vocab[w] = i
    os.makedirs(processor_dir, exist_ok=True)
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]", model_max_length=512)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size}, do_resize=True,
                                         do_rescale=True, do_normalize=True, do_convert_rgb=True)  # fmt: skip
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.save_pretrained(processor_dir)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    return model, processor


__all__ = ["build_tiny_blip", "build_blip_large_shaped", "blip_large_config", "TINY_IMAGE_SIZE"]
