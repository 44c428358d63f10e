"""HowTo100M ASR baseline: join consecutive ASR segments into ~8 s clips (TRAINING row schema).

Input: HowTo100M's `caption.json` (`{video_id: {"start": [...], "end": [...], "text": [...]}}`, seconds) and a
folder with the videos (`<video_id>.<ext>`). Segment-joining rule (`join_asr_segments`): walk the segments in time
order, appending to the current clip until the clip (first start -> last end) lasts at least `--clip_seconds`
(default 8 s), then emit it and start a new one; a final shorter group is emitted as is. Empty/whitespace texts are
dropped. So every clip is >= 8 s except possibly the last one of a video, and a single long segment stays alone.

Rows: `{"id": "<video_id>_<k>", "frames": [T JPEGs sampled uniformly in the clip], "caption": joined ASR text,
"source": "howto100m_asr"}`.

Streaming and resumable (`training_rows.InputShardBuild`): `caption.json` is read entry by entry
(`io_utils.iter_json_object`, never whole), cut into input shards of `--videos_per_shard` consecutive videos (in file
order; shard `b` of `caption.json` is named `caption-BBBBB`), and shard `b` goes to work unit `b % num_units`
(`--shard_id/--num_shards` jobs x `accelerate launch` processes). Its output is `data/caption-BBBBB-NNNNN.parquet`,
its done marker `_state/done/caption-BBBBB.json`. Videos are decoded in a bounded, unordered process pool.

    python -m datasets_scripts.build_howto100m_asr --captions caption.json --video_dir videos/ --output_dir out/asr
"""

import argparse
import os
import sys
import time

from datasets_scripts.io_utils import find_video_file, iter_json_object, launch_rank_world, work_unit
from datasets_scripts.training_rows import (
    InputShardBuild,
    build_by_input_shard,
    sample_clips_jpeg,
    train_schema,
    write_card,
)
from datasets_scripts.video_io import VideoDecodeError, probe_video


def join_asr_segments(starts, ends, texts, clip_seconds: float = 8.0) -> list[tuple[float, float, str]]:
    """Greedy join of consecutive ASR segments into clips of at least `clip_seconds` (see module docstring)."""
    segs = sorted(
        ((float(s), float(e), " ".join(str(t).split())) for s, e, t in zip(starts, ends, texts)), key=lambda x: x[0]
    )
    segs = [s for s in segs if s[2] and s[1] > s[0]]
    clips, cur = [], []
    for seg in segs:
        cur.append(seg)
        if cur[-1][1] - cur[0][0] >= clip_seconds:
            clips.append((cur[0][0], max(c[1] for c in cur), " ".join(c[2] for c in cur)))
            cur = []
    if cur:
        clips.append((cur[0][0], max(c[1] for c in cur), " ".join(c[2] for c in cur)))
    return clips


def _work(job):
    vid, path, clips, t, short_side, backend = job
    try:
        duration = probe_video(path).duration
        clips = [(s, min(e, duration), txt) for s, e, txt in clips if s < duration]  # ASR can outlast the video
        if not clips:
            return vid, path, [], None, "no_clips_inside_video"
        frames = sample_clips_jpeg(path, [(s, e) for s, e, _ in clips], t, short_side, backend)
        return vid, path, clips, frames, None
    except VideoDecodeError as e:
        return vid, path, clips, None, e.reason
    except Exception as e:
        return vid, path, clips, None, f"unexpected: {e!r}"[:200]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.build_howto100m_asr",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--captions", required=True, help="HowTo100M caption.json")
    p.add_argument("--video_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--clip_seconds", type=float, default=8.0)
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--short_side", type=int, default=256)
    p.add_argument("--shard_size", type=int, default=1000, help="rows per output parquet shard")
    p.add_argument("--videos_per_shard", type=int, default=1000, help="videos per input shard (resume unit)")
    p.add_argument("--num_workers", type=int, default=2, help="decoding processes (0 = decode in this process)")
    p.add_argument("--max_in_flight", type=int, default=None, help="videos submitted at once (default 2 x workers)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--max_videos", type=int, default=None, help="only the first N videos of caption.json")
    p.add_argument("--shard_id", type=int, default=None, help="this job's index among --num_shards independent jobs")
    p.add_argument("--num_shards", type=int, default=None, help="number of independent jobs (e.g. SLURM array size)")
    return p.parse_args(argv)


def caption_blocks(path: str, videos_per_shard: int, max_videos: int | None = None):
    """Yield `(block_index, [(video_id, entry)])`: consecutive `videos_per_shard` entries of caption.json."""
    block, index = [], 0
    for n, (vid, entry) in enumerate(iter_json_object(path)):
        if max_videos is not None and n >= max_videos:
            break
        block.append((vid, entry))
        if len(block) == videos_per_shard:
            yield index, block
            block, index = [], index + 1
    if block:
        yield index, block


def main(argv=None):
    args = parse_args(argv)
    from tqdm.auto import tqdm

    rank, world = launch_rank_world()
    unit, num_units = work_unit(args.shard_id, args.num_shards, rank, world)
    build = InputShardBuild(args.output_dir, train_schema(), args.shard_size, f"u{unit:05d}of{num_units:05d}")
    prefix = os.path.splitext(os.path.basename(args.captions))[0]

    def todo():
        for b, block in caption_blocks(args.captions, args.videos_per_shard, args.max_videos):
            stem = f"{prefix}-{b:05d}"
            if b % num_units == unit and not build.is_done(stem):
                yield stem, block

    def jobs_of(stem, block):
        for vid, c in block:
            path = find_video_file(args.video_dir, vid)
            if path is None:
                build.error(stem, os.path.join(args.video_dir, vid), "missing", "find", video_id=vid)
                continue
            clips = join_asr_segments(c["start"], c["end"], c["text"], args.clip_seconds)
            if clips:
                yield vid, path, clips, args.num_frames, args.short_side, args.backend

    t0 = time.time()
    counts = {"clips": 0, "video_errors": 0}
    pbar = tqdm(unit="shard", desc=f"howto100m_asr[{unit}/{num_units}]")

    def on_result(build, stem, result):
        vid, path, clips, frames, err = result
        if err is not None:
            build.error(stem, path, err, "decode", video_id=vid)
            counts["video_errors"] += 1
            return
        for k, ((s, e, text), fr) in enumerate(zip(clips, frames)):
            build.add(stem, {"id": f"{vid}_{k:05d}", "frames": fr, "caption": text, "source": "howto100m_asr"})
        counts["clips"] += len(clips)

    done = build_by_input_shard(
        build, todo(), jobs_of, _work, on_result, args.num_workers, args.max_in_flight,
        on_shard_done=lambda stem, rows: pbar.update(1),
    )  # fmt: skip
    pbar.close()
    body = f"""# HowTo100M ASR clips (baseline)

Made with `python -m datasets_scripts.build_howto100m_asr`: consecutive HowTo100M ASR segments joined into clips of
at least {args.clip_seconds:g} s (greedy, in time order; the last clip of a video may be shorter), {args.num_frames}
JPEG frames per clip sampled uniformly by timestamp, short side {args.short_side}. HowTo100M videos and captions are
subject to the HowTo100M terms (research use; YouTube content owners keep their rights). ASR text is often unrelated
to what is visible (METHOD.md §1: it refers to the video in ~45% of clips)."""
    write_card(args.output_dir, "HowTo100M ASR clips", train_schema(), body, ["train"], "other",
               paths={"train": "data/*.parquet"})  # fmt: skip
    print(
        f"[build_howto100m_asr unit {unit}/{num_units}] {counts['clips']} clips from {done['input_shards']} input "
        f"shards, {counts['video_errors']} videos skipped, {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    return counts["clips"]


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
