"""A tiny but real BLIP image captioner, built offline, for tests and smoke runs.

`build_tiny_blip(save_dir)` writes a randomly initialised `BlipForConditionalGeneration` (hidden size 32, one
layer per tower) plus a `BlipProcessor` (a `BlipImageProcessor` at 320x320, the pseudolabeling resolution, and a
WordPiece `BertTokenizer` backed by the `tokenizers` library) into `save_dir`, so that
`AutoProcessor.from_pretrained(save_dir)` / `AutoModelForImageTextToText.from_pretrained(save_dir)` work with
`HF_HUB_OFFLINE=1`. It stands in for `Salesforce/blip-image-captioning-large` (same classes, same special-token
layout: BLIP starts decoding from a `[DEC]` bos token and stops at `[SEP]`).
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


__all__ = ["build_tiny_blip", "TINY_IMAGE_SIZE"]
