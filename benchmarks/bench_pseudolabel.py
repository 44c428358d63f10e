"""Pseudolabeling throughput you can plan with: the real pipeline end to end with a BLIP-Large-shaped teacher.

Generated H.264 videos (640x360, 25 fps, a keyframe every `--gop_seconds`) are served by a local 127.0.0.1 HTTP
server (`--source http`, so fetching is part of the run) and pseudolabeled by `datasets_scripts.pseudolabel.run`:
download, probe, seek-decode one frame per 8-s clip (`--frame_selection`), resize to 320 px in `--num_workers`
decoding processes, then the BLIP processor and `generate` in this process. The teacher has
`Salesforce/blip-image-captioning-large`'s shapes (`frozencaptioner.tiny_teacher.blip_large_config`: ViT-L/16 at
320 px with interpolated position embeddings, BERT-base decoder) and random weights; captions have a fixed length
(`min_new_tokens = max_new_tokens = 20`), nucleus sampling `top_p=0.9`, as in the paper.

Reports clips/s, clips/s per decoding worker, and where the time went: `fetch` and `decode` (summed over the
decoding workers), `preprocess` (resize in the workers + the BLIP processor), `generate` (this process).

`--device cuda` (skipped with a message without CUDA) runs the same end to end with more clips, bf16 and bigger
batches, then the captioner alone on random 320-px frames (frames/s). Goals on one H100, reported, not gated:
>= 500 clips/s end to end, >= 1,500 frames/s for the captioner alone (the paper: ~9 clips/s per V100).

    python benchmarks/bench_pseudolabel.py                      # CPU: ~32 clips, 2 decoding workers
    python benchmarks/bench_pseudolabel.py --device cuda        # GPU part (benchmarks/gpu_suite.sh)
"""

import argparse
import functools
import http.server
import json
import os
import sys
import tempfile
import threading
import time


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from datasets_scripts.synthetic import make_test_video  # noqa: E402


CAPTION_TOKENS = 20


def make_videos(folder: str, count: int, clip_seconds: float, gop_seconds: float, per_video: int = 8) -> list[str]:
    """`count` generated videos of `per_video` clips each."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"video{i:04d}.mp4")
        make_test_video(path, seconds=per_video * clip_seconds, fps=25, size=(640, 360), keyframe_interval=gop_seconds)
        paths.append(path)
    return paths


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


def serve(folder: str):
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def end_to_end(args, device: str, clips: int, num_workers: int, batch_size: int, dtype: str, work: str) -> dict:
    from datasets_scripts import pseudolabel
    from frozencaptioner.tiny_teacher import build_blip_large_shaped

    t0 = time.perf_counter()
    needed = max(1, -(-clips // 8))  # 8 clips (64 s) per video
    unique = needed if args.source == "local" else min(needed, args.unique_videos)
    videos = make_videos(os.path.join(work, "videos"), unique, 8.0, args.gop_seconds)
    print(f"generated {len(videos)} videos (640x360, 25 fps, 64 s, keyframe every {args.gop_seconds:g} s) in "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
    server = None
    if args.source == "http":  # each URL is its own input (own id); `?copy=k` lets few files serve many inputs
        server, base = serve(os.path.join(work, "videos"))
        entries = [f"{base}/{os.path.basename(videos[k % unique])}?copy={k}" for k in range(needed)]
    else:
        entries = videos
    listing = os.path.join(work, "inputs.txt")
    with open(listing, "w") as f:
        f.write("\n".join(entries) + "\n")
    t0 = time.perf_counter()
    model, processor = build_blip_large_shaped(os.path.join(work, "processor"), image_size=320)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built the BLIP-Large-shaped random teacher ({n_params / 1e6:.0f}M parameters) in "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
    argv = ["--input", listing, "--output_dir", os.path.join(work, "out"), "--teacher", "random-blip-large-shaped",
            "--num_workers", str(num_workers), "--batch_size", str(batch_size), "--dtype", dtype,
            "--max_new_tokens", str(CAPTION_TOKENS), "--min_new_tokens", str(CAPTION_TOKENS),
            "--frame_selection", args.frame_selection, "--no_progress", "--image_size", "320"]  # fmt: skip
    run_args = pseudolabel.parse_args(argv)
    import torch

    captioner = pseudolabel.Captioner(run_args.teacher, "random", torch.device(device), dtype, 320, run_args,
                                      model=model, processor=processor)  # fmt: skip
    summary = pseudolabel.run(run_args, captioner=captioner)
    if server is not None:
        server.shutdown()
    return summary


def report(title: str, summary: dict, num_workers: int) -> None:
    s, n = summary["seconds"], summary["clips_done"]
    stages, busy = summary["seconds_by_stage"], summary["decode_worker_seconds"]
    print(f"\n== {title} ==")
    print(f"clips: {n} from {summary['videos_done']} videos in {s:.1f}s wall: {n / s:.2f} clips/s end to end "
          f"({n / s / max(1, num_workers):.3f} clips/s per decoding worker, {num_workers} workers)")  # fmt: skip
    print(f"one decoding worker's capacity (fetch + decode + resize): {n / max(busy, 1e-9):.1f} clips/s "
          f"({busy / max(n, 1) * 1000:.0f} ms/clip); the captioner's: {n / max(stages['generate'], 1e-9):.2f} "
          "clips/s")  # fmt: skip
    print("time by stage (fetch/decode summed over the workers; preprocess = worker resize + BLIP processor; "
          "generate in the main process):")  # fmt: skip
    for name, sec in stages.items():
        print(f"  {name:<10} {sec:8.2f}s  {sec / max(n, 1) * 1000:8.1f} ms/clip")
    print(f"  generate share of the wall time: {stages['generate'] / s:.0%}; decoding workers busy: "
          f"{busy / (s * max(1, num_workers)):.0%}")  # fmt: skip
    if summary.get("keyframe_fallbacks"):
        print(f"  keyframe fallbacks (clips without a keyframe): {summary['keyframe_fallbacks']}")
    print("summary: " + json.dumps(summary))


def captioner_only(batch_size: int = 256, n_batches: int = 5, dtype_name: str = "bfloat16") -> float | None:
    """Frames/s of `generate` alone on CUDA: random 320-px frames, BLIP-Large-shaped random weights, 20 tokens."""
    import torch

    if not torch.cuda.is_available():
        print("\n== captioner alone (CUDA): skipped, no GPU on this machine ==")
        return None
    from transformers import BlipForConditionalGeneration

    from frozencaptioner.tiny_teacher import blip_large_config

    dtype = getattr(torch, dtype_name)
    model = BlipForConditionalGeneration(blip_large_config()).to("cuda", dtype).eval()
    pixels = torch.randn(batch_size, 3, 320, 320, device="cuda", dtype=dtype)
    kw = dict(do_sample=True, top_p=0.9, top_k=0, num_beams=1, max_new_tokens=CAPTION_TOKENS,
              min_new_tokens=CAPTION_TOKENS, interpolate_pos_encoding=True)  # fmt: skip
    with torch.inference_mode():
        model.generate(pixel_values=pixels, **kw)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n_batches):
            model.generate(pixel_values=pixels, **kw)
        torch.cuda.synchronize()
    fps = batch_size * n_batches / (time.perf_counter() - t0)
    print(f"\n== captioner alone ({torch.cuda.get_device_name()}, {dtype_name}, batch {batch_size}, 320 px, "
          f"{CAPTION_TOKENS} tokens): {fps:.0f} frames/s (goal on one H100: >= 1,500) ==")  # fmt: skip
    return fps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--clips", type=int, default=None, help="default 32 on CPU, 4096 on CUDA")
    p.add_argument("--num_workers", type=int, default=None, help="decoding workers (default 2 on CPU, CPUs on CUDA)")
    p.add_argument("--batch_size", type=int, default=None, help="frames per generate call (8 on CPU, 256 on CUDA)")
    p.add_argument("--frame_selection", default="centre", choices=["centre", "keyframe"])
    p.add_argument("--gop_seconds", type=float, default=2.0)
    p.add_argument("--source", default="http", choices=["http", "local"], help="serve the videos over 127.0.0.1")
    p.add_argument("--unique_videos", type=int, default=16, help="http: distinct files behind the URLs")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = tempfile.mkdtemp(prefix="bench_pseudolabel_")
    if args.device == "cpu":
        clips, workers, batch = args.clips or 32, args.num_workers or 2, args.batch_size or 8
        summary = end_to_end(args, "cpu", clips, workers, batch, "float32", work)
        report(f"end to end on CPU, float32, batch {batch}", summary, workers)
        return
    import torch

    if not torch.cuda.is_available():
        print("--device cuda: no CUDA on this machine; skipped (the CPU run is `--device cpu`)")
        return
    clips, workers, batch = args.clips or 4096, args.num_workers or (os.cpu_count() or 8), args.batch_size or 256
    dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    summary = end_to_end(args, "cuda", clips, workers, batch, dtype, work)
    report(f"end to end on {torch.cuda.get_device_name()}, {dtype}, batch {batch} (goal on one H100: >= 500 clips/s)",
           summary, workers)  # fmt: skip
    captioner_only(batch, dtype_name=dtype)


if __name__ == "__main__":
    main()
