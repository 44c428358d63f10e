"""Shared pieces of the benchmarks: paper-shaped configs, a median timer, FLOP counting, device/dtype choice."""

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import OPTConfig, TimesformerConfig

from modeling_frozencaptioner import FrozenCaptionerConfig


def device_and_dtype(args_dtype: str = "auto"):
    """CUDA with bf16 when available (the GPU run), else CPU fp32."""
    if torch.cuda.is_available():
        dtype = {"auto": torch.bfloat16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
            args_dtype
        ]
        return torch.device("cuda"), dtype
    return torch.device("cpu"), torch.float32


def paper_config(
    num_layers: int = 24,
    hidden: int = 2048,
    heads: int = 32,
    ffn: int = 8192,
    vocab: int = 50272,
    adapter_layers=None,
    num_frames: int = 16,
    vision_layers: int = 1,
    **kwargs,
) -> FrozenCaptionerConfig:
    """OPT-1.3B-shaped decoder (by default) + a TimeSformer-base-width tower (768) with few layers: the benchmarks
    feed precomputed video features, so the tower's depth does not enter what they measure."""
    vision = TimesformerConfig(num_frames=num_frames, num_hidden_layers=vision_layers)
    text = OPTConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads,
                     ffn_dim=ffn, word_embed_proj_dim=hidden, max_position_embeddings=2048)  # fmt: skip
    if adapter_layers is None:
        adapter_layers = list(range(num_layers // 2, num_layers, 2))
    return FrozenCaptionerConfig(vision_config=vision, text_config=text, adapter_layers=adapter_layers, **kwargs)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_median_times(fns: dict, device, repeats: int = 5, warmup: int = 1) -> dict:
    """Median wall time (s) of each `fns[name]()`, the variants run in turn (A B C A B C ...) so that load from
    other processes on a shared machine hits all of them alike instead of biasing the ratio."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000:
            return f"{n:.2f}{unit}"
        n /= 1000
    return f"{n:.2f}E"
