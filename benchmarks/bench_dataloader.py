"""Data-loader headroom: batches/s the streaming loader PRODUCES vs batches/s a training step CONSUMES.

    python benchmarks/bench_dataloader.py                 # CPU, the paper-config batch sizes (image 32, video 4)
    python benchmarks/bench_dataloader.py --num_workers 8 --device cuda   # on a GPU node

Produced: `train.data.CaptionBatchStream` over parquet shards in the builders' format (JPEG frames, short side 256),
decoded + resized + centre-cropped to `--image_size` by the processor, `--num_workers` DataLoader workers per stream,
image and video streams measured separately. Consumed: forward + backward + AdamW step of a FrozenCaptioner on the
same batches (pre-made, no loader). On CPU the model is a tiny one with TimeSformer-base geometry (224 px, patch 16,
8 frames) and small widths, so the step is cheap and the ratio is a lower bound of the headroom a real GPU run has
only if the GPU step is slower than this CPU step; the GPU measurement with OPT-1.3B/TimeSformer-base shapes needs
CUDA (`--device cuda --real_shapes`). Both sides share the machine's cores here, measured one after the other.
The mixed rate uses the paper's draw: time per batch = p * t_image + (1 - p) * t_video.
"""

import argparse
import os
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
    p.add_argument("--image_batch_size", type=int, default=32, help="train/configs/pretrain_mix.yaml")
    p.add_argument("--video_batch_size", type=int, default=4, help="train/configs/pretrain_mix.yaml")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--short_side", type=int, default=256, help="stored JPEG size (the builders' default)")
    p.add_argument("--num_workers", type=int, default=2, help="DataLoader workers per stream")
    p.add_argument("--num_batches", type=int, default=12, help="batches timed per modality (after 2 warm-up)")
    p.add_argument("--p_image", type=float, default=0.95)
    p.add_argument("--device", default="cpu")
    p.add_argument("--real_shapes", action="store_true", help="OPT-1.3B + TimeSformer-base shaped random towers (GPU)")
    return p.parse_args()


def make_shards(root, args):
    from train.data import encode_jpeg, write_parquet_shard

    rng = np.random.default_rng(0)
    width = int(args.short_side * 4 / 3)

    def frame():  # smooth-ish content so JPEG sizes are realistic, not noise-sized
        base = rng.integers(0, 255, size=(args.short_side // 16, width // 16, 3)).astype(np.uint8)
        return encode_jpeg(np.kron(base, np.ones((16, 16, 1), dtype=np.uint8)), quality=90)

    captions = ["a man is cooking food in a kitchen", "a dog runs", "people are walking on a street at night"]
    n_img, n_vid = args.image_batch_size * (args.num_batches + 4), args.video_batch_size * (args.num_batches + 4)
    image_frames = [frame() for _ in range(64)]
    video_frames = [frame() for _ in range(64)]
    images = [
        {"id": f"i{i}", "frames": [image_frames[i % 64]], "caption": captions[i % 3], "source": "bench"}
        for i in range(n_img)
    ]
    videos = [
        {
            "id": f"v{i}",
            "frames": [video_frames[(i + k) % 64] for k in range(args.num_frames)],
            "caption": captions[i % 3],
            "source": "bench",
        }
        for i in range(n_vid)
    ]
    shards = {"image": [], "video": []}
    for name, rows in (("image", images), ("video", videos)):
        half = len(rows) // 2
        for k, part in enumerate((rows[:half], rows[half:])):
            shards[name].append(write_parquet_shard(os.path.join(root, f"{name}-{k}.parquet"), part))
    return shards


def build_model(args):
    from transformers import OPTConfig, TimesformerConfig

    from frozencaptioner.tiny import tiny_processor, tiny_tokenizer
    from modeling_frozencaptioner import FrozenCaptionerConfig, FrozenCaptionerForConditionalGeneration

    tokenizer = tiny_tokenizer()
    if args.real_shapes:
        vision = TimesformerConfig(image_size=args.image_size, num_frames=args.num_frames)  # base: 768 x 12 layers
        text = OPTConfig(vocab_size=50272, hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, ffn_dim=8192,
                         word_embed_proj_dim=2048, pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip
        adapters = [12, 14, 16, 18, 20, 22]
    else:
        vision = TimesformerConfig(image_size=args.image_size, patch_size=16, num_frames=args.num_frames, hidden_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)  # fmt: skip
        text = OPTConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=4, num_attention_heads=4, ffn_dim=128,
                         word_embed_proj_dim=64, max_position_embeddings=128, pad_token_id=1, bos_token_id=2, eos_token_id=2)  # fmt: skip
        adapters = [2, 3]
    config = FrozenCaptionerConfig(vision_config=vision, text_config=text, adapter_layers=adapters)
    model = FrozenCaptionerForConditionalGeneration(config).to(args.device)
    processor = tiny_processor(tokenizer, num_frames=args.num_frames, image_size=args.image_size)
    return model, processor


def time_loader(stream, args):
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.num_workers,
                                         persistent_workers=args.num_workers > 0)  # fmt: skip
    it = iter(loader)
    batches = [next(it)["batch"] for _ in range(2)]  # warm-up: worker start, first shard open
    start = time.perf_counter()
    for _ in range(args.num_batches):
        batches.append(next(it)["batch"])
    elapsed = time.perf_counter() - start
    del it, loader
    return args.num_batches / elapsed, batches[-1]


def time_step(model, optimizer, batch, args):
    batch = {k: v.to(args.device) for k, v in batch.items()}
    for i in range(2 + args.num_batches):
        if i == 2:
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return args.num_batches / (time.perf_counter() - start)


def main():
    args = parse_args()
    from train.data import CaptionBatchStream

    print(
        f"device={args.device} threads={torch.get_num_threads()} cores={os.cpu_count()} workers/stream={args.num_workers}"
    )
    print(f"batch sizes: image {args.image_batch_size} x 1 frame, video {args.video_batch_size} x {args.num_frames} frames, "
          f"{args.image_size} px crop from {args.short_side} px JPEGs; p_image={args.p_image}")  # fmt: skip
    model, processor = build_model(args)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        shards = make_shards(root, args)
        for name, bs, frames in (
            ("image", args.image_batch_size, 1),
            ("video", args.video_batch_size, args.num_frames),
        ):
            stream = CaptionBatchStream(shards[name], processor, name, bs, frames, shuffle_buffer=0, bucket_batches=4,
                                        image_size=args.image_size)  # fmt: skip
            produced, batch = time_loader(stream, args)
            consumed = time_step(model, optimizer, batch, args)
            results[name] = (produced, consumed)
            print(f"{name:5s}: produced {produced:7.2f} batches/s ({produced * bs:8.1f} samples/s) | "
                  f"consumed {consumed:7.2f} batches/s ({consumed * bs:8.1f} samples/s) | headroom x{produced / consumed:.2f}")  # fmt: skip
    p = args.p_image
    produced = 1.0 / (p / results["image"][0] + (1 - p) / results["video"][0])
    consumed = 1.0 / (p / results["image"][1] + (1 - p) / results["video"][1])
    print(f"mixed (p_image={p}): produced {produced:.2f} batches/s, consumed {consumed:.2f} batches/s, "
          f"headroom x{produced / consumed:.2f} (goal >= 2)")  # fmt: skip
    if not torch.cuda.is_available():
        print(
            "GPU numbers (OPT-1.3B + TimeSformer-base shapes, ZeRO-2 bf16, samples/s and peak memory): need CUDA; skipped"
        )


if __name__ == "__main__":
    main()
