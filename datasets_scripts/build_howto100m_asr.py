"""HowTo100M ASR baseline: join consecutive ASR segments into ~8 s clips (TRAINING row schema).

Input: HowTo100M's `caption.json` (`{video_id: {"start": [...], "end": [...], "text": [...]}}`, seconds) and a
folder with the videos (`<video_id>.<ext>`). Segment-joining rule (`join_asr_segments`): walk the segments in time
order, appending to the current clip until the clip (first start -> last end) lasts at least `--clip_seconds`
(default 8 s), then emit it and start a new one; a final shorter group is emitted as is. Empty/whitespace texts are
dropped. So every clip is >= 8 s except possibly the last one of a video, and a single long segment stays alone.

Rows: `{"id": "<video_id>_<k>", "frames": [T JPEGs sampled uniformly in the clip], "caption": joined ASR text,
"source": "howto100m_asr"}`.

    python -m datasets_scripts.build_howto100m_asr --captions caption.json --video_dir videos/ --output_dir out/asr
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from datasets_scripts.io_utils import ErrorLog, find_video_file
from datasets_scripts.training_rows import ShardWriter, sample_clips_jpeg, train_schema, write_card
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
    p.add_argument("--shard_size", type=int, default=1000)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--backend", default="auto")
    p.add_argument("--max_videos", type=int, default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with open(args.captions, encoding="utf-8") as f:
        captions = json.load(f)
    errors = ErrorLog(os.path.join(args.output_dir, "errors.jsonl"))
    jobs = []
    for vid in sorted(captions)[: args.max_videos]:
        c = captions[vid]
        path = find_video_file(args.video_dir, vid)
        if path is None:
            errors.write(os.path.join(args.video_dir, vid), "missing", "find", video_id=vid)
            continue
        clips = join_asr_segments(c["start"], c["end"], c["text"], args.clip_seconds)
        if clips:
            jobs.append((vid, path, clips, args.num_frames, args.short_side, args.backend))
    writer = ShardWriter(args.output_dir, "train", train_schema(), args.shard_size)
    t0, n_err = time.time(), 0
    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=max(1, args.num_workers)) as pool:
        for vid, path, clips, frames, err in tqdm(pool.map(_work, jobs), total=len(jobs), unit="video"):
            if err is not None:
                errors.write(path, err, "decode", video_id=vid)
                n_err += 1
                continue
            for k, ((s, e, text), fr) in enumerate(zip(clips, frames)):
                writer.add({"id": f"{vid}_{k:05d}", "frames": fr, "caption": text, "source": "howto100m_asr"})
    n = writer.close()
    body = f"""# HowTo100M ASR clips (baseline)

Made with `python -m datasets_scripts.build_howto100m_asr`: consecutive HowTo100M ASR segments joined into clips of
at least {args.clip_seconds:g} s (greedy, in time order; the last clip of a video may be shorter), {args.num_frames}
JPEG frames per clip sampled uniformly by timestamp, short side {args.short_side}. HowTo100M videos and captions are
subject to the HowTo100M terms (research use; YouTube content owners keep their rights). ASR text is often unrelated
to what is visible (METHOD.md §1: it refers to the video in ~45% of clips)."""
    write_card(args.output_dir, "HowTo100M ASR clips", train_schema(), body, ["train"], "other")
    print(f"[build_howto100m_asr] {n} clips, {n_err} videos skipped, {time.time() - t0:.1f}s", file=sys.stderr)
    return n


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
