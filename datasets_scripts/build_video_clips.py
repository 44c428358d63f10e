"""Pseudolabeled clips -> training clips: T frames per clip, in the TRAINING row schema.

Reads a `pseudolabel` output dir (parquet shards with rows `video_id, clip_index, start, end, caption, teacher,
video_path`), decodes `--num_frames` (default 8) frames per clip at `uniform_timestamps(start, end, T)` by seeking,
resizes them so the short side is `--short_side` (default 256), JPEG-encodes them and writes
`{"id": "<video_id>_<clip_index>", "frames": [T JPEGs], "caption", "source": "pseudolabel:<teacher>"}` + README.md.

Streaming and resumable (`training_rows.InputShardBuild`): input shards are read one at a time (only the columns
needed), videos are decoded in a bounded, unordered process pool (`--num_workers`, at most `--max_in_flight`
videos submitted), and the output of input shard `S.parquet` is `data/S-NNNNN.parquet`, its error records
`errors/S.jsonl`, its done marker `_state/done/S.json` (written last). A rerun skips done input shards and redoes
the others; after a `kill -9` every clip ends up in the output exactly once and finished output is never deleted.
Memory does not grow with the input size. Work splits by input shard across `accelerate launch` processes and
independent jobs (`--shard_id/--num_shards`, e.g. a SLURM array); no process waits for another.

    python -m datasets_scripts.build_video_clips --input out/howto100m_blip --output_dir out/howto100m_blip_clips
"""

import argparse
import os
import sys
import time

from datasets_scripts.io_utils import check_unique_stems, launch_rank_world, owner_unit, work_unit
from datasets_scripts.training_rows import (
    InputShardBuild,
    build_by_input_shard,
    sample_clips_jpeg,
    train_schema,
    write_card,
)
from datasets_scripts.video_io import VideoDecodeError


COLUMNS = ["video_id", "clip_index", "start", "end", "caption", "teacher", "video_path"]


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
    p.add_argument("--shard_size", type=int, default=1000, help="rows per output parquet shard")
    p.add_argument("--num_workers", type=int, default=2, help="decoding processes (0 = decode in this process)")
    p.add_argument("--max_in_flight", type=int, default=None, help="videos submitted at once (default 2 x workers)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--shard_id", type=int, default=None, help="this job's index among --num_shards independent jobs")
    p.add_argument("--num_shards", type=int, default=None, help="number of independent jobs (e.g. SLURM array size)")
    p.add_argument("--license", default="other")
    p.add_argument("--debug_sleep", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: slow each video down
    return p.parse_args(argv)


def _resolve(path: str, video_root: str | None) -> str:
    if video_root and not os.path.exists(path):
        cand = os.path.join(video_root, os.path.basename(path))
        return cand
    return path


def _work(job):
    path, clips, t, short_side, quality, backend, sleep = job
    if sleep:
        time.sleep(sleep)
    try:
        frames = sample_clips_jpeg(path, [(c["start"], c["end"]) for c in clips], t, short_side, backend, quality)
        return path, clips, frames, None
    except VideoDecodeError as e:
        return path, clips, None, e.reason
    except Exception as e:  # never stop the build on one bad file
        return path, clips, None, f"unexpected: {e!r}"[:200]


def input_shards(input_dir: str) -> list[tuple[str, str]]:
    """`[(stem, path)]` of the pseudolabel shards (`<input>/data/*.parquet`), sorted."""
    import glob

    files = sorted(glob.glob(os.path.join(input_dir, "data", "*.parquet")))
    return [(os.path.splitext(os.path.basename(f))[0], f) for f in files]


def main(argv=None):
    args = parse_args(argv)
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    # read the shards directly: `datasets.load_dataset(dir)` can serve a stale cached copy (see README)
    shards = input_shards(args.input)
    if not shards:
        raise SystemExit(f"no parquet shards under {args.input}/data")
    check_unique_stems([s for s, _ in shards], "input shards")
    rank, world = launch_rank_world()
    unit, num_units = work_unit(args.shard_id, args.num_shards, rank, world)
    build = InputShardBuild(args.output_dir, train_schema(), args.shard_size, f"u{unit:05d}of{num_units:05d}")
    mine = [(s, f) for s, f in shards if owner_unit(s, num_units) == unit]
    todo = [(s, f) for s, f in mine if not build.is_done(s)]

    def jobs_of(stem, path):
        """One job per video of the input shard (a shard holds whole videos), from the needed columns only."""
        cols = pq.read_table(path, columns=COLUMNS).to_pydict()
        by_video: dict = {}
        for i in range(len(cols["video_id"])):
            by_video.setdefault((cols["video_id"][i], cols["video_path"][i]), []).append(
                {k: cols[k][i] for k in ("video_id", "clip_index", "start", "end", "caption", "teacher")}
            )
        del cols
        for (_, path_), clips in sorted(by_video.items()):
            clips.sort(key=lambda c: c["clip_index"])
            yield (_resolve(path_, args.video_root), clips, args.num_frames, args.short_side, args.jpeg_quality,
                   args.backend, args.debug_sleep)  # fmt: skip

    t0 = time.time()
    counts = {"clips": 0, "video_errors": 0}
    pbar = tqdm(total=len(todo), unit="shard", desc=f"build_video_clips[{unit}/{num_units}]")

    def on_result(build, stem, result):
        path, clips, frames, err = result
        if err is not None:
            build.error(stem, path, err, "decode", video_id=clips[0]["video_id"])
            counts["video_errors"] += 1
            return
        for c, fr in zip(clips, frames):
            build.add(
                stem,
                {
                    "id": f"{c['video_id']}_{c['clip_index']:05d}",
                    "frames": fr,
                    "caption": c["caption"],
                    "source": f"pseudolabel:{c['teacher']}",
                },
            )
        counts["clips"] += len(clips)

    done = build_by_input_shard(
        build, todo, jobs_of, _work, on_result, args.num_workers, args.max_in_flight,
        on_shard_done=lambda stem, rows: pbar.update(1),
    )  # fmt: skip
    pbar.close()
    body = f"""# Pseudolabeled training clips

Made with `python -m datasets_scripts.build_video_clips` from the pseudolabels in `{args.input}`: each row is one
clip with {args.num_frames} JPEG frames sampled uniformly by timestamp and resized to short side {args.short_side},
its pseudolabel `caption`, and `source` = `pseudolabel:<teacher model id>`. The source videos keep their own
licences; captions are model outputs (may be wrong or biased)."""
    write_card(args.output_dir, "pseudolabeled training clips", train_schema(), body, ["train"], args.license,
               paths={"train": "data/*.parquet"})  # fmt: skip
    dt = time.time() - t0
    print(
        f"[build_video_clips unit {unit}/{num_units}] {counts['clips']} clips written from {done['input_shards']} "
        f"input shards ({len(mine) - len(todo)} already done), {counts['video_errors']} videos skipped "
        f"(errors/), {counts['clips'] / max(dt, 1e-9):.1f} clips/s",
        file=sys.stderr,
    )
    return counts["clips"]


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
