"""One training step with no autograd below the first adapter vs backprop through all decoder layers.

The baseline is the naive setup: autograd kept through every layer, as when any parameter below the first adapter
requires grad (here: the positional embeddings), which is what wrapping frameworks do. Memory: the activation bytes
autograd saves for backward (exact, via saved-tensor hooks; parameters excluded) and, on CPU, the process's peak RSS growth during the step sampled
from /proc (each variant in its own subprocess); on CUDA, `max_memory_allocated`.
Run: `python -m benchmarks.bench_train_step [--layers 24 --hidden 1024 --batch 32 --tokens 32]`.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

from benchmarks.common import device_and_dtype, human, median_time, paper_config
from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size every millisecond while active."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, _rss_bytes())


def measure(variant: str, args) -> dict:
    device, dtype = device_and_dtype(args.dtype)
    torch.manual_seed(0)
    heads = max(1, args.hidden // 64)
    config = paper_config(
        num_layers=args.layers, hidden=args.hidden, heads=heads, ffn=4 * args.hidden, vocab=args.vocab
    )
    model = FrozenCaptionerForConditionalGeneration(config).to(device, dtype).train()
    if variant == "backprop_all":
        model.language_model.model.decoder.embed_positions.weight.requires_grad_(True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(4, args.vocab, (args.batch, args.tokens), device=device)
    video = torch.randn(args.batch, 8, 196, config.vision_config.hidden_size, device=device, dtype=dtype)

    def step():
        loss = model(vision_hidden_states=video, input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up; optimizer state allocated
    saved = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):  # activations only: frozen weights saved by linear layers are not extra memory
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            saved.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(vision_hidden_states=video, input_ids=ids, labels=ids).loss.backward()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakRSS() as rss:
            step()
        peak = rss.peak - rss.base
    return {"time": median_time(step, device, args.repeats, warmup=0), "saved": sum(saved.values()), "peak": peak,
            "device": str(device), "dtype": str(dtype)}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50272)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--variant", choices=["no_grad_lower", "backprop_all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, JSON out
        print(json.dumps(measure(args.variant, args)))
        return
    results = {}
    for variant in ("no_grad_lower", "backprop_all"):
        cmd = [sys.executable, "-m", "benchmarks.bench_train_step", "--variant", variant] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    fast, slow = results["no_grad_lower"], results["backprop_all"]
    print(f"device={fast['device']} dtype={fast['dtype']} OPT layers={args.layers} d={args.hidden} adapters before "
          f"{list(range(args.layers // 2, args.layers, 2))} batch={args.batch} tokens={args.tokens} video=8x196x768")  # fmt: skip
    for name, r in results.items():
        print(f"{name:14s} step {r['time'] * 1e3:8.1f} ms  saved-for-backward {human(r['saved'])}B  "
              f"peak growth {human(r['peak'])}B")  # fmt: skip
    print(f"speed-up x{slow['time'] / fast['time']:.2f}; saved activations -{1 - fast['saved'] / slow['saved']:.1%}; "
          f"peak memory -{1 - fast['peak'] / slow['peak']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
