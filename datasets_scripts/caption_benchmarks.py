"""Shared writer for the video-captioning benchmarks (MSR-VTT, MSVD).

Val/test splits -> EVAL rows `{"id", "frames", "references"}` (all references of a video kept).
Train split -> by default TRAINING rows, one row per (video, caption) pair (`id` = `<video>#<k>`, frames repeated
per caption: ~20x larger but directly usable by `train/`); `--train_layout per_video` writes the train split as
EVAL rows too (one row per video with all references) to save space.
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor

from datasets_scripts.io_utils import ErrorLog, find_video_file
from datasets_scripts.training_rows import ShardWriter, eval_schema, sample_clips_jpeg, train_schema, write_card
from datasets_scripts.video_io import VideoDecodeError, probe_video


def add_common_args(p):
    p.add_argument("--video_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--splits", default="train,val,test")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--short_side", type=int, default=256)
    p.add_argument("--shard_size", type=int, default=500)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--backend", default="auto")
    p.add_argument("--train_layout", default="per_caption", choices=["per_caption", "per_video"])


def _frames(job):
    vid, path, t, short_side, backend = job
    try:
        duration = probe_video(path).duration
        return vid, sample_clips_jpeg(path, [(0.0, duration)], t, short_side, backend)[0], None
    except VideoDecodeError as e:
        return vid, None, e.reason
    except Exception as e:
        return vid, None, f"unexpected: {e!r}"[:200]


def write_benchmark(
    name: str,
    annotations: dict[str, list[tuple[str, list[str]]]],
    args,
    expected: dict[str, int],
    card_body: str,
) -> dict[str, int]:
    """`annotations`: `{split: [(video_id, references)]}`; videos are `args.video_dir/<video_id>.<ext>` (missing ones
    are logged as errors). Returns rows written per split."""
    splits = {
        split: [(vid, find_video_file(args.video_dir, vid), refs) for vid, refs in items]
        for split, items in annotations.items()
    }
    errors = ErrorLog(os.path.join(args.output_dir, "errors.jsonl"))
    wanted = [s for s in args.splits.split(",") if s]
    written, schemas = {}, {}
    from tqdm.auto import tqdm

    for split in wanted:
        videos = splits.get(split, [])
        if expected.get(split) and len(videos) != expected[split]:
            print(
                f"[{name}] note: split {split} has {len(videos)} videos (standard: {expected[split]})", file=sys.stderr
            )
        per_caption = split == "train" and args.train_layout == "per_caption"
        schema = train_schema() if per_caption else eval_schema()
        schemas[split] = schema
        writer = ShardWriter(args.output_dir, split, schema, args.shard_size)
        refs = {vid: r for vid, _, r in videos}
        jobs = []
        for vid, path, _ in videos:
            if path is None:
                errors.write(os.path.join(args.video_dir, vid), "missing", "find", video_id=vid, split=split)
            else:
                jobs.append((vid, path, args.num_frames, args.short_side, args.backend))
        with ProcessPoolExecutor(max_workers=max(1, args.num_workers)) as pool:
            for vid, frames, err in tqdm(pool.map(_frames, jobs), total=len(jobs), desc=f"{name}/{split}"):
                if err is not None:
                    errors.write(vid, err, "decode", video_id=vid, split=split)
                    continue
                if per_caption:
                    for k, cap in enumerate(refs[vid]):
                        writer.add({"id": f"{vid}#{k}", "frames": frames, "caption": cap, "source": name})
                else:
                    writer.add({"id": vid, "frames": frames, "references": list(refs[vid])})
        written[split] = writer.close()
    write_card(args.output_dir, name, eval_schema(), card_body, wanted, "other", schemas=schemas)
    print(f"[{name}] rows written: {written}", file=sys.stderr)
    return written
