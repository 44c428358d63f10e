"""Separable vs full cross-attention adapter at the paper's shapes: forward+backward time and FLOPs.

t=16 frames, s=196 patches (224 px / 16), q=32 text tokens, OPT-1.3B width (2048, 32 heads), TimeSformer-base
features (768). Prints both the cross-attention block (the part that differs) and the whole gated adapter layer (the
FFN is the same in both). Run: `python -m benchmarks.bench_cross_attention [--batch 4]`.
"""

import argparse
import os
import sys


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch

from benchmarks.common import count_flops, device_and_dtype, human, interleaved_median_times, paper_config
from modeling_frozencaptioner.modeling_frozencaptioner import FrozenCaptionerGatedCrossAttentionLayer


def step_functions(kind, args, device, dtype):
    """{"xattn": fwd+bwd of the cross-attention block, "layer": fwd+bwd of the whole gated adapter layer}."""
    config = paper_config(cross_attention=kind)
    layer = FrozenCaptionerGatedCrossAttentionLayer(config, 0).to(device, dtype).train()
    g = torch.Generator(device="cpu").manual_seed(0)
    text = torch.randn(args.batch, args.q, config.text_config.hidden_size, generator=g).to(device, dtype)
    video = torch.randn(args.batch, args.t, args.s, config.vision_config.hidden_size, generator=g).to(device, dtype)
    text.requires_grad_(True)

    def attention_only():
        keys, values, split = layer.project_visual(video)
        layer.cross_attn(layer.cross_attn_layernorm(text), keys, values, split).sum().backward()

    def whole_layer():
        keys, values, split = layer.project_visual(video)
        layer(text, keys, values, split).sum().backward()

    return {"xattn": attention_only, "layer": whole_layer}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--t", type=int, default=16)
    parser.add_argument("--s", type=int, default=196)
    parser.add_argument("--q", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    args = parser.parse_args()
    device, dtype = device_and_dtype(args.dtype)
    print(f"device={device} dtype={dtype} threads={torch.get_num_threads()} batch={args.batch} t={args.t} s={args.s} "
          f"q={args.q} text_dim=2048 heads=32 vision_dim=768")  # fmt: skip
    fns = {
        (kind, part): fn
        for kind in ("separable", "full")
        for part, fn in step_functions(kind, args, device, dtype).items()
    }
    times = interleaved_median_times(fns, device, repeats=args.repeats)
    flops = {key: count_flops(fn) for key, fn in fns.items()}
    for part in ("xattn", "layer"):
        ts, fs = times["separable", part], flops["separable", part]
        tf, ff = times["full", part], flops["full", part]
        label = "cross-attention block" if part == "xattn" else "whole gated adapter (+FFN)"
        print(f"{label:28s} fwd+bwd  separable {ts * 1e3:9.1f} ms {human(fs)}FLOP | full {tf * 1e3:9.1f} ms "
              f"{human(ff)}FLOP | speed-up {tf / ts:5.2f}x  FLOP ratio {ff / fs:5.2f}x")  # fmt: skip
    print(
        f"token ratio t*s/(t+s) = {args.t * args.s / (args.t + args.s):.2f} (the O(q t s) vs O(q (t+s)) attention term)"
    )


if __name__ == "__main__":
    main()
