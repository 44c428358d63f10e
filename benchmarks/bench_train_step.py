"""One training step with no autograd below the first adapter vs backprop through all decoder layers.

The baseline is the naive setup: autograd kept through every layer, as when any parameter below the first adapter
requires grad (here: the positional embeddings; toggled on the same model, so both variants share weights).
Memory: the activation bytes autograd saves for backward (exact, saved-tensor hooks, parameters excluded) and the peak
of live tensor bytes during the step (the profiler's allocation timeline on CPU, `max_memory_allocated` on CUDA).
Run: `python -m benchmarks.bench_train_step [--layers 24 --hidden 1024 --batch 32 --tokens 32]`.
"""

import argparse
import os
import sys


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import device_and_dtype, human, interleaved_median_times, paper_config
from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration


def peak_live_bytes(fn, device) -> int:
    """Peak growth of live tensor memory while `fn()` runs."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def saved_activation_bytes(fn, model) -> int:
    saved = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):  # frozen weights saved by linear layers are not extra memory
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50272)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    args = parser.parse_args()
    device, dtype = device_and_dtype(args.dtype)
    torch.manual_seed(0)
    heads = max(1, args.hidden // 64)
    config = paper_config(
        num_layers=args.layers, hidden=args.hidden, heads=heads, ffn=4 * args.hidden, vocab=args.vocab
    )
    model = FrozenCaptionerForConditionalGeneration(config).to(device, dtype).train()
    positions = model.language_model.model.decoder.embed_positions.weight
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + [positions], lr=1e-4)
    ids = torch.randint(4, args.vocab, (args.batch, args.tokens), device=device)
    video = torch.randn(args.batch, 8, 196, config.vision_config.hidden_size, device=device, dtype=dtype)

    def forward_backward():
        model(vision_hidden_states=video, input_ids=ids, labels=ids).loss.backward()

    def step_with(backprop_all: bool):
        def step():
            positions.requires_grad_(backprop_all)
            forward_backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    fns = {"no_grad_lower": step_with(False), "backprop_all": step_with(True)}
    times = interleaved_median_times(fns, device, repeats=args.repeats)
    results = {}
    for name, fn in fns.items():
        positions.requires_grad_(name == "backprop_all")
        saved = saved_activation_bytes(forward_backward, model)
        optimizer.zero_grad(set_to_none=True)
        results[name] = {"time": times[name], "saved": saved, "peak": peak_live_bytes(fn, device)}
    print(f"device={device} dtype={dtype} threads={torch.get_num_threads()} OPT layers={args.layers} d={args.hidden} "
          f"adapters before {config.adapter_layers} batch={args.batch} tokens={args.tokens} video=8x196x768")  # fmt: skip
    for name, r in results.items():
        print(f"{name:14s} step {r['time'] * 1e3:8.1f} ms  activations saved for backward {human(r['saved'])}B  "
              f"peak live memory during step {human(r['peak'])}B")  # fmt: skip
    fast, slow = results["no_grad_lower"], results["backprop_all"]
    print(f"speed-up x{slow['time'] / fast['time']:.2f}; saved activations -{1 - fast['saved'] / slow['saved']:.1%}; "
          f"peak memory -{1 - fast['peak'] / slow['peak']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
