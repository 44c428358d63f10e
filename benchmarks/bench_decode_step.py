"""One cached decoding step: FrozenCaptioner with a 16-frame video vs the bare OPT of the same size; 8 vs 32 frames.

OPT-1.3B shape (24 layers, d=2048, adapters before layers 12..22), separable adapters; the video's adapter keys and
values are precomputed once (as `generate()` does), so a step costs the decoder plus the adapters' query/out/FFN
work. FLOP floor = bare OPT step x (1 + adapter params / decoder-layer params) (all adapters vs all decoder layers).
Run: `python -m benchmarks.bench_decode_step [--batch 1 --prefix 16]`.
"""

import argparse
import os
import sys


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch

from benchmarks.common import count_flops, device_and_dtype, human, interleaved_median_times, paper_config
from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prefix", type=int, default=16, help="tokens already in the KV cache")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    args = parser.parse_args()
    device, dtype = device_and_dtype(args.dtype)
    torch.manual_seed(0)
    model = FrozenCaptionerForConditionalGeneration(paper_config(num_frames=32)).to(device, dtype).eval()
    config = model.config
    decoder_params = sum(p.numel() for p in model.language_model.model.decoder.layers.parameters())
    adapter_params = sum(p.numel() for p in model.gated_cross_attn_layers.parameters())
    print(f"device={device} dtype={dtype} threads={torch.get_num_threads()} batch={args.batch} prefix={args.prefix} "
          f"OPT layers={config.text_config.num_hidden_layers} d={config.text_config.hidden_size} "
          f"adapters={config.adapter_layers} decoder-layer params={human(decoder_params)} "
          f"adapter params={human(adapter_params)}")  # fmt: skip

    prompt = torch.randint(4, 50000, (args.batch, args.prefix), device=device)
    step_ids = torch.randint(4, 50000, (args.batch, 1), device=device)

    def video_kv(frames):
        feats = torch.randn(args.batch, frames, 196, config.vision_config.hidden_size, device=device, dtype=dtype)
        return model.compute_visual_key_values(feats)

    fns = {}
    with torch.no_grad():
        bare_cache = model.language_model(input_ids=prompt, use_cache=True).past_key_values

        def bare_step():
            model.language_model(input_ids=step_ids, past_key_values=bare_cache, use_cache=True)
            bare_cache.crop(-1)  # drop the step token: every repeat decodes at the same position

        fns["bare"] = bare_step
        for frames in (8, 16, 32):
            kv, split = video_kv(frames)
            cache = model(
                input_ids=prompt, visual_key_values=kv, visual_kv_split=split, use_cache=True
            ).past_key_values

            def step(kv=kv, split=split, cache=cache):
                model(
                    input_ids=step_ids,
                    visual_key_values=kv,
                    visual_kv_split=split,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache.crop(-1)

            fns[frames] = step
        times = interleaved_median_times(fns, device, repeats=args.repeats)
        results = {name: (times[name], count_flops(fn)) for name, fn in fns.items()}

    floor = 1 + adapter_params / decoder_params
    (tb, fb), (t16, f16) = results["bare"], results[16]
    print(f"bare OPT step            {tb * 1e3:8.1f} ms  {human(fb)}FLOP")
    for frames in (8, 16, 32):
        t, f = results[frames]
        print(f"FrozenCaptioner {frames:2d} frames {t * 1e3:8.1f} ms  {human(f)}FLOP")
    print(f"FLOP floor factor (1 + adapter/decoder-layer params) = {floor:.3f}")
    print(f"16 frames vs bare: time x{t16 / tb:.3f} (floor x{floor:.3f} -> {t16 / tb / floor:.3f} of floor), "
          f"FLOPs x{f16 / fb:.3f} ({f16 / fb / floor:.3f} of floor)")  # fmt: skip
    print(f"32 vs 8 frames: time x{results[32][0] / results[8][0]:.3f}, FLOPs x{results[32][1] / results[8][1]:.4f}")


if __name__ == "__main__":
    main()
