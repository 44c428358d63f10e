"""Training step from a feature cache vs from JPEG frames, at TimeSformer-base + OPT-1.3B shape, and bytes per clip.

    python benchmarks/bench_feature_cache.py                      # CPU, fp32, 2 clips x 8 frames per batch
    python benchmarks/bench_feature_cache.py --device cuda        # bf16 model (fp16 cache), batch 2 unless --batch_size

Random weights (`benchmarks.common.paper_config`: OPT-1.3B decoder with adapters before layers 12..22, a 12-layer
TimeSformer-base tower, 8 frames at 224 px). The script writes `--rows` clips of 8 JPEG frames (256 px short side,
quality 90, smooth synthetic scenes) with the builders' schema, caches them with `datasets_scripts.cache_features`
(fp16 pooled tokens, through the files), then runs `--repeats` training steps from each, alternating, through
`train.data.CaptionBatchStream` in this process (no DataLoader workers, so the data time is what one worker spends
per batch): data = read (+ decode + preprocess), step = forward + backward + AdamW on the adapters (+ the tower's
forward for frames). Bytes per clip are measured on the written parquet files.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import numpy as np
import torch


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--dtype", choices=["fp32", "bf16", "fp16"], default=None, help="model dtype (cpu: fp32, cuda: bf16)"
    )
    p.add_argument("--batch_size", type=int, default=2, help="clips per training batch")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--vision_layers", type=int, default=12, help="TimeSformer-base: 12")
    p.add_argument("--text_layers", type=int, default=24, help="OPT-1.3B: 24")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per variant (after one warm-up step each)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                   help="sgd: no optimizer state (2.7 GB less for the 340M adapter parameters at this shape)")  # fmt: skip
    p.add_argument("--rows", type=int, default=None, help="clips written (default: enough for every step)")
    return p.parse_args()


def scene_clip(rng, num_frames: int, height: int = 256, width: int = 340) -> np.ndarray:
    """(T, H, W, 3) uint8: a smooth random background (upsampled 8x10 colour field) with a moving bright square and
    mild noise, so that JPEG sizes are in the range of real video frames at this size rather than of white noise."""
    import torch.nn.functional as F

    field = torch.from_numpy(rng.uniform(30, 220, size=(1, 3, 8, 10)).astype(np.float32))
    background = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)[0]
    frames = []
    for t in range(num_frames):
        frame = background.clone()
        x, y = 20 + 30 * t, 40 + 10 * t
        frame[:, y : y + 60, x : x + 60] = torch.tensor([250.0, 240.0, 60.0])[:, None, None]
        frame += torch.from_numpy(rng.normal(0, 3, size=frame.shape).astype(np.float32))
        frames.append(frame.clamp(0, 255).byte().permute(1, 2, 0).numpy())
    return np.stack(frames)


def main():
    args = parse_args()
    from transformers import VideoMAEVideoProcessor

    from benchmarks.common import paper_config, sync
    from datasets_scripts import cache_features
    from frozencaptioner.tiny import gpt2_bpe_tokenizer, tiny_tokenizer
    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration, FrozenCaptionerProcessor
    from train.data import VIDEO, CaptionBatchStream, ShardIndex, encode_jpeg, write_parquet_shard
    from train.shapes import VOCABULARY
    from train.train import model_inputs

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    ]
    torch.manual_seed(0)
    config = paper_config(num_layers=args.text_layers, num_frames=args.num_frames, vision_layers=args.vision_layers)
    model = FrozenCaptionerForConditionalGeneration(config).to(device, dtype).train()
    try:
        tokenizer = gpt2_bpe_tokenizer()  # OPT's BPE: real caption lengths
    except ImportError:
        tokenizer = tiny_tokenizer(VOCABULARY)
    size = args.image_size
    video_processor = VideoMAEVideoProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = FrozenCaptionerProcessor(video_processor=video_processor, tokenizer=tokenizer,
                                         num_frames=args.num_frames, max_length=64)  # fmt: skip
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.SGD)(trainable, lr=1e-5)

    rows_needed = args.rows or args.batch_size * (args.repeats + 1)
    rng = np.random.default_rng(0)
    captions = ["a person is cooking food in a kitchen and talking to the camera",
                "a man rides a bike down a city street at night", "a woman shows how to paint a small wooden table"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"id": f"clip{i:05d}", "frames": [encode_jpeg(f) for f in scene_clip(rng, args.num_frames)],
                 "caption": captions[i % len(captions)], "source": "bench"} for i in range(rows_needed)]  # fmt: skip
        jpeg_bytes = statistics.mean(len(f) for row in rows for f in row["frames"])
        frames_file = write_parquet_shard(os.path.join(tmp, "frames.parquet"), rows, row_group_size=64)
        del rows
        start = time.perf_counter()
        tower = cache_features.TowerFeatures(model, processor, args.num_frames, dtype="fp16", device=device,
                                             tower_dtype=dtype, source="bench")  # fmt: skip
        cache_features.main(["--input", frames_file, "--output_dir", os.path.join(tmp, "cache"), "--model_name_or_path",
                             "bench", "--batch_size", str(args.batch_size)], tower=tower)  # fmt: skip
        sync(device)
        build_seconds = time.perf_counter() - start
        cache_files = sorted(
            os.path.join(tmp, "cache", "data", f) for f in os.listdir(os.path.join(tmp, "cache", "data"))
        )

        def per_clip(files):
            index = ShardIndex.from_files(files)
            return sum(index.sizes) / index.num_rows, index.bytes_per_row

        streams = {
            name: iter(
                CaptionBatchStream(
                    files, processor, VIDEO, args.batch_size, args.num_frames, shuffle_buffer=0, bucket_batches=1
                )
            )  # fmt: skip
            for name, files in (("frames", [frames_file]), ("cache", cache_files))
        }

        def step(name):
            t0 = time.perf_counter()
            batch = next(streams[name])["batch"]
            t1 = time.perf_counter()
            loss = model(**model_inputs(batch, device, dtype)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            return t1 - t0, time.perf_counter() - t1

        times = {name: [] for name in streams}
        for repeat in range(args.repeats + 1):  # alternate the variants: shared-machine load hits both alike
            for name in streams:
                data_s, step_s = step(name)
                if repeat:  # the first step of each is a warm-up
                    times[name].append((data_s, step_s))
        sizes = {"frames": per_clip([frames_file]), "cache": per_clip(cache_files)}

    med = {name: [statistics.median(t[i] for t in ts) for i in (0, 1)] for name, ts in times.items()}
    t, s = args.num_frames, (size // config.vision_config.patch_size) ** 2
    print(f"device={device} dtype={dtype} threads={torch.get_num_threads()} batch={args.batch_size} clips x "
          f"{t} frames at {size} px; TimeSformer-base ({args.vision_layers} layers, 768) + OPT-1.3B shape "
          f"({args.text_layers} layers, 2048; adapters {config.adapter_layers}, {sum(p.numel() for p in trainable) / 1e6:.0f}M "
          f"trainable, {args.optimizer}); {args.repeats} timed steps each")  # fmt: skip
    for name, (data_s, step_s) in med.items():
        print(f"{name:6s} data {data_s * 1e3:9.1f} ms  model step {step_s * 1e3:9.1f} ms  total "
              f"{(data_s + step_s) * 1e3:9.1f} ms")  # fmt: skip
    total = {name: sum(v) for name, v in med.items()}
    print(f"step time from cache / from frames: x{total['cache'] / total['frames']:.3f} "
          f"(speed-up x{total['frames'] / total['cache']:.2f}; data x{med['frames'][0] / med['cache'][0]:.1f} faster, "
          f"model step x{med['frames'][1] / med['cache'][1]:.2f} faster)")  # fmt: skip
    (f_file, f_raw), (c_file, c_raw) = sizes["frames"], sizes["cache"]
    print(f"bytes per clip: frames {f_file / 1e3:.1f} KB on disk ({t} JPEGs of {jpeg_bytes / 1e3:.1f} KB mean; {f_raw / 1e3:.1f} KB of columns), "
          f"cache {c_file / 1e3:.1f} KB on disk ({c_raw / 1e3:.1f} KB of columns; {t}+{s} pooled tokens x 768 fp16 = "
          f"{(t + s) * 768 * 2 / 1e3:.1f} KB): cache / frames x{c_file / f_file:.2f}")  # fmt: skip
    print(f"feature-cache record in every shard footer: {len(json.dumps(tower.record, sort_keys=True)):,} bytes")
    print(
        f"cache build: {rows_needed} clips in {build_seconds:.1f} s ({rows_needed / build_seconds:.2f} clips/s, "
        f"tower forward batch {args.batch_size})"
    )


if __name__ == "__main__":
    main()
