"""Pseudolabeled clips -> training clips: T frames per clip, in the TRAINING row schema.

Reads a `pseudolabel` output dir (`load_dataset(dir)` rows `video_id, clip_index, start, end, caption, teacher,
video_path`), decodes `--num_frames` (default 8) frames per clip at `uniform_timestamps(start, end, T)` by seeking,
resizes them so the short side is `--short_side` (default 256), JPEG-encodes them and writes
`{"id": "<video_id>_<clip_index>", "frames": [T JPEGs], "caption", "source": "pseudolabel:<teacher>"}` to
`<output_dir>/data/train-NNNNN.parquet` + README.md. Videos are decoded in a process pool (`--num_workers`);
undecodable videos go to `errors.jsonl`.

    python -m datasets_scripts.build_video_clips --input out/howto100m_blip --output_dir out/howto100m_blip_clips
"""

import argparse
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

from datasets_scripts.io_utils import ErrorLog
from datasets_scripts.training_rows import ShardWriter, sample_clips_jpeg, train_schema, write_card
from datasets_scripts.video_io import VideoDecodeError


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.build_video_clips",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="pseudolabel output dir (or any dataset with the same columns)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--video_root", default=None, help="resolve relative/missing video_path against this folder")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--short_side", type=int, default=256)
    p.add_argument("--jpeg_quality", type=int, default=90)
    p.add_argument("--shard_size", type=int, default=1000, help="rows per parquet shard")
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--backend", default="auto")
    p.add_argument("--license", default="other")
    return p.parse_args(argv)


def _resolve(path: str, video_root: str | None) -> str:
    if video_root and not os.path.exists(path):
        cand = os.path.join(video_root, os.path.basename(path))
        return cand
    return path


def _work(job):
    path, clips, t, short_side, quality, backend = job
    try:
        frames = sample_clips_jpeg(path, [(c["start"], c["end"]) for c in clips], t, short_side, backend, quality)
        return path, clips, frames, None
    except VideoDecodeError as e:
        return path, clips, None, e.reason
    except Exception as e:  # never stop the build on one bad file
        return path, clips, None, f"unexpected: {e!r}"[:200]


def main(argv=None):
    args = parse_args(argv)
    import glob

    import pyarrow.parquet as pq

    # read the shards directly: `datasets.load_dataset(dir)` can serve a stale cached copy (see README)
    files = sorted(glob.glob(os.path.join(args.input, "data", "*.parquet")))
    if not files:
        raise SystemExit(f"no parquet shards under {args.input}/data")
    by_video = defaultdict(list)
    for row in (r for f in files for r in pq.read_table(f).to_pylist()):
        by_video[(row["video_id"], row["video_path"])].append(row)
    jobs = [
        (
            _resolve(path, args.video_root),
            sorted(rows, key=lambda r: r["clip_index"]),
            args.num_frames,
            args.short_side,
            args.jpeg_quality,
            args.backend,
        )
        for (vid, path), rows in sorted(by_video.items())
    ]
    writer = ShardWriter(args.output_dir, "train", train_schema(), args.shard_size)
    errors = ErrorLog(os.path.join(args.output_dir, "errors.jsonl"))
    t0, n_err = time.time(), 0
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=max(1, args.num_workers)) as pool:
        for path, clips, frames, err in tqdm(pool.map(_work, jobs), total=len(jobs), unit="video"):
            if err is not None:
                errors.write(path, err, "decode", video_id=clips[0]["video_id"])
                n_err += 1
                continue
            for c, fr in zip(clips, frames):
                writer.add(
                    {
                        "id": f"{c['video_id']}_{c['clip_index']:05d}",
                        "frames": fr,
                        "caption": c["caption"],
                        "source": f"pseudolabel:{c['teacher']}",
                    }
                )
    n = writer.close()
    body = f"""# Pseudolabeled training clips

Made with `python -m datasets_scripts.build_video_clips` from the pseudolabels in `{args.input}`: each row is one
clip with {args.num_frames} JPEG frames sampled uniformly by timestamp and resized to short side {args.short_side},
its pseudolabel `caption`, and `source` = `pseudolabel:<teacher model id>`. The source videos keep their own
licences; captions are model outputs (may be wrong or biased)."""
    write_card(args.output_dir, "pseudolabeled training clips", train_schema(), body, ["train"], args.license)
    dt = time.time() - t0
    print(
        f"[build_video_clips] {n} clips written, {n_err} videos skipped (errors.jsonl), {n / max(dt, 1e-9):.1f} clips/s",
        file=sys.stderr,
    )
    return n


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
