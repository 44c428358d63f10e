"""Pseudolabel unlabeled videos: caption the center frame of every 8-second clip with an image captioner.

This is step 1 of the method (METHOD.md §1; Lialin et al., WACV 2023 W): every video is cut into consecutive
8 s clips **by timestamp**, only the **center frame** of each clip is decoded (by seeking), resized to 320x320 and
captioned by BLIP-Large (`Salesforce/blip-image-captioning-large`) with **nucleus sampling, top_p=0.9, no beams**.

What it writes into `--output_dir`:

* `data/train-RRRRR-NNNNN.parquet`: one row per clip, columns `video_id: string, clip_index: int32,
  start: float64, end: float64, caption: string, teacher: string, video_path: string`. A shard always holds all
  clips of the videos in it, and is written atomically (temp file + fsync + `os.replace`).
* `errors.jsonl`: one JSON line per skipped input: `{"path", "reason", "stage", "video_id", ...}`.
* `manifest.jsonl`: one line per finished shard (name, videos, clip count): human-readable progress log.
* `README.md`: dataset card (YAML `configs` -> `data/*.parquet`, features, license, how it was made, teacher id +
  revision, sampling settings), so `datasets.load_dataset(output_dir)` works.

Crash safety: a rerun with the same command first reads the `video_id` column of every finished shard and the
`errors.jsonl` records; those videos are skipped, the rest is redone. Because shards are atomic and never split a
video, every clip ends up in the output exactly once, whatever moment the previous run was killed at.

Scale: `accelerate launch -m datasets_scripts.pseudolabel ...` (or plain `python -m`). Videos (not clips) are
split across processes by position in the sorted input list (`index % num_processes`), so no video is done twice.
Probing, seeking and resizing run in torch DataLoader workers (`--num_workers`) while the main process captions.

Examples:

    python -m datasets_scripts.pseudolabel --input /data/howto100m/videos --output_dir out/howto100m_blip
    accelerate launch -m datasets_scripts.pseudolabel --input videos.txt --output_dir out/pl --batch_size 256
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np
import torch

from datasets_scripts.io_utils import (
    ErrorLog,
    dataset_card,
    download,
    is_url,
    list_file_entries,
    list_video_folder,
    next_shard_index,
    partial_state,
    write_parquet_atomic,
    write_text_atomic,
)
from datasets_scripts.video_io import VideoDecodeError, clip_spans, probe_video, read_frames_at, resize_frame


DEFAULT_TEACHER = "Salesforce/blip-image-captioning-large"


def output_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("video_id", pa.string()),
            ("clip_index", pa.int32()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("caption", pa.string()),
            ("teacher", pa.string()),
            ("video_path", pa.string()),
        ]
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.pseudolabel",
        description="Caption the center frame of every N-second clip of each video with an image captioner "
        "(BLIP-Large, nucleus sampling top_p=0.9) and write parquet shards + a dataset card.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="folder of videos, .txt file of paths/URLs, or HF dataset")
    p.add_argument("--input_type", default="auto", choices=["auto", "folder", "list", "hf"])
    p.add_argument("--video_column", default="video", help="HF dataset input: column with a path or Video feature")
    p.add_argument("--id_column", default=None, help="HF dataset input: column used as video_id (default: row index)")
    p.add_argument("--split", default="train", help="HF dataset input: split to read")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help="any HF image-captioning model id or local dir")
    p.add_argument("--teacher_revision", default=None, help="hub revision (branch, tag or commit) of the teacher")
    p.add_argument("--prompt", default=None, help="optional text prompt for conditional captioning")
    p.add_argument("--clip_seconds", type=float, default=8.0)
    p.add_argument("--min_last_clip", type=float, default=None, help="default clip_seconds/2; see clip_spans")
    p.add_argument("--image_size", type=int, default=320, help="captioner input size (square); 0 = teacher's own")
    p.add_argument("--batch_size", type=int, default=64, help="frames per captioner call")
    p.add_argument("--num_workers", type=int, default=4, help="DataLoader workers decoding videos")
    p.add_argument("--shard_size", type=int, default=5000, help="clips per parquet shard (whole videos only)")
    p.add_argument("--top_p", type=float, default=0.9)
    p.add_argument("--top_k", type=int, default=0, help="0 = pure nucleus sampling (transformers' default is 50)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max_new_tokens", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav", "torchcodec"])
    p.add_argument("--download_timeout", type=float, default=60.0)
    p.add_argument("--retry_errors", action="store_true", help="retry inputs already listed in errors.jsonl")
    p.add_argument("--max_videos", type=int, default=None, help="only the first N inputs (smoke tests)")
    p.add_argument("--license", default="other", help="license field of the dataset card")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--debug_sleep", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: slow down a run
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# inputs


def resolve_inputs(args) -> tuple[list[tuple[str, object]], object]:
    """Returns `([(video_id, source)], hf_dataset_or_None)` in a deterministic order. `source` is a path/URL, or
    the row index into the HF dataset."""
    kind = args.input_type
    if kind == "auto":
        if os.path.isdir(args.input) and not _looks_like_hf_dir(args.input):
            kind = "folder"
        elif os.path.isfile(args.input):
            kind = "list"
        else:
            kind = "hf"
    if kind == "folder":
        items = list_video_folder(args.input)
        return items, None
    if kind == "list":
        return list_file_entries(args.input), None
    ds = load_hf_videos(args.input, args.split, args.video_column)
    ids = ds[args.id_column] if args.id_column else [f"{i:08d}" for i in range(len(ds))]
    return [(str(vid), i) for i, vid in enumerate(ids)], ds


def _looks_like_hf_dir(path: str) -> bool:
    return os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(
        os.path.join(path, "dataset_dict.json")
    )


def load_hf_videos(name_or_dir: str, split: str, video_column: str):
    """Load an HF dataset (save_to_disk dir or `load_dataset` name/dir) and make `video_column` undecoded
    (`{"path", "bytes"}` dicts, or plain path strings)."""
    import datasets

    if _looks_like_hf_dir(name_or_dir):
        ds = datasets.load_from_disk(name_or_dir)
    else:
        ds = datasets.load_dataset(name_or_dir, split=split)
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split]
    feature = ds.features[video_column]
    if hasattr(datasets, "Video") and isinstance(feature, datasets.Video):
        ds = ds.cast_column(video_column, datasets.Video(decode=False))
    return ds


# ----------------------------------------------------------------------------------------------------------------
# decoding (runs in DataLoader workers)


def _materialize(source, hf_ds, video_column: str, timeout: float, tmp_dir: str) -> tuple[str, str, bool]:
    """-> (local_path, display_path, is_temp). Downloads URLs, writes HF-dataset bytes to a temp file."""
    if hf_ds is not None:
        value = hf_ds[int(source)][video_column]
        if isinstance(value, dict):
            if value.get("bytes"):
                import tempfile

                fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=tmp_dir)
                with os.fdopen(fd, "wb") as f:
                    f.write(value["bytes"])
                return tmp, value.get("path") or f"row:{source}", True
            value = value.get("path")
        if value is None:
            raise VideoDecodeError(f"row:{source}", "missing", "empty video cell")
        source = value
    if is_url(source):
        try:
            return download(source, timeout=timeout, tmp_dir=tmp_dir), source, True
        except Exception as e:
            raise VideoDecodeError(source, "download_failed", f"{type(e).__name__}: {e}") from e
    return str(source), str(source), False


def decode_video_item(vid, source, hf_ds, args, tmp_dir) -> dict:
    """Probe, cut into clips by timestamp, seek-decode each clip's center frame, resize. Never raises."""
    display, local, is_temp, stage = str(source), None, False, "download"
    try:
        local, display, is_temp = _materialize(source, hf_ds, args.video_column, args.download_timeout, tmp_dir)
        stage = "probe"
        info = probe_video(local)
        spans = clip_spans(info.duration, args.clip_seconds, args.min_last_clip)
        stage = "decode"
        centers = [(s + e) / 2 for s, e in spans]
        frames = read_frames_at(local, centers, backend=args.backend)
        if args.image_size:
            frames = np.stack([resize_frame(f, args.image_size, mode="exact") for f in frames])
        return {"video_id": vid, "path": display, "spans": spans, "frames": frames}
    except VideoDecodeError as e:
        return {"video_id": vid, "path": display, "error": e.reason, "detail": e.detail[:300], "stage": stage}
    except Exception as e:  # anything else a broken file can trigger: record, skip, keep going
        return {"video_id": vid, "path": display, "error": "unexpected", "detail": repr(e)[:300], "stage": stage}
    finally:
        if is_temp and local and os.path.exists(local):
            os.remove(local)


class VideoIterable(torch.utils.data.IterableDataset):
    """torch IterableDataset over this process's pending videos; worker `w` of `W` takes items `w, w+W, ...`."""

    def __init__(self, items, hf_ds, args, tmp_dir):
        self.items, self.hf_ds, self.args, self.tmp_dir = items, hf_ds, args, tmp_dir

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for k in range(wid, len(self.items), nw):
            vid, source = self.items[k]
            yield decode_video_item(vid, source, self.hf_ds, self.args, self.tmp_dir)


def _identity(x):
    return x


def make_loader(items, hf_ds, args, tmp_dir):
    return torch.utils.data.DataLoader(
        VideoIterable(items, hf_ds, args, tmp_dir),
        batch_size=None,
        num_workers=args.num_workers,
        collate_fn=_identity,
        prefetch_factor=4 if args.num_workers > 0 else None,
        persistent_workers=False,
    )


# ----------------------------------------------------------------------------------------------------------------
# teacher


class Captioner:
    """Any HF image-captioning model (AutoProcessor + AutoModelForImageTextToText, falling back to
    AutoModelForCausalLM for GIT-style models), run with nucleus sampling."""

    def __init__(self, name: str, revision: str | None, device, dtype: str, image_size: int, args):
        from transformers import AutoProcessor

        self.torch, self.device, self.args = torch, device, args
        if dtype == "auto":
            if getattr(device, "type", str(device)) == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        self.dtype = getattr(torch, dtype)
        self.processor = AutoProcessor.from_pretrained(name, revision=revision)
        self.model = self._load_model(name, revision).to(device=device, dtype=self.dtype).eval()
        self.name = name
        self.revision = revision or getattr(self.model.config, "_commit_hash", None) or "local"
        self.extra, self.size_kwargs = {}, {}
        if image_size:
            # BLIP-style processors resize to a fixed (height, width): ask for image_size x image_size at call time
            # (v5 processors keep `size` as a SizeDict; editing it after loading is not reliable)
            size = getattr(getattr(self.processor, "image_processor", None), "size", None)
            height = size.get("height") if isinstance(size, dict) else getattr(size, "height", None)
            if height is not None:
                self.size_kwargs = {"size": {"height": image_size, "width": image_size}}
            vision = getattr(self.model.config, "vision_config", None)
            native = getattr(vision, "image_size", None)
            import inspect

            if native not in (None, image_size) and "interpolate_pos_encoding" in str(
                inspect.signature(self.model.generate)
            ):
                self.extra["interpolate_pos_encoding"] = True

    @staticmethod
    def _load_model(name, revision):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        try:
            return AutoModelForImageTextToText.from_pretrained(name, revision=revision)
        except ValueError:
            return AutoModelForCausalLM.from_pretrained(name, revision=revision)

    def __call__(self, frames: list[np.ndarray]) -> list[str]:
        torch = self.torch
        kwargs = {"images": list(frames), "return_tensors": "pt", **self.size_kwargs}
        if self.args.prompt:
            kwargs["text"] = [self.args.prompt] * len(frames)
        inputs = self.processor(**kwargs)
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                **self.extra,
                do_sample=True,
                top_p=self.args.top_p,
                top_k=self.args.top_k,
                temperature=self.args.temperature,
                num_beams=1,
                max_new_tokens=self.args.max_new_tokens,
            )
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        if self.args.prompt:  # strip an echoed prompt
            texts = [t[len(self.args.prompt) :] if t.startswith(self.args.prompt) else t for t in texts]
        return [" ".join(t.split()) for t in texts]


# ----------------------------------------------------------------------------------------------------------------
# resume state


def finished_video_ids(output_dir: str) -> set[str]:
    """video_ids present in finished shards (the source of truth; the manifest is only a log)."""
    import glob

    import pyarrow.parquet as pq

    done = set()
    for p in sorted(glob.glob(os.path.join(output_dir, "data", "*.parquet"))):
        done.update(pq.read_table(p, columns=["video_id"]).column("video_id").to_pylist())
    return done


def card_text(args, teacher_revision: str, stats: dict | None) -> str:
    stats_txt = (
        f"\n## Statistics\n\n{stats['clips']} clips from {stats['videos']} videos; {stats['errors']} inputs skipped "
        f"(see `errors.jsonl`); mean caption length {stats['mean_words']:.1f} words.\n"
        if stats
        else "\n*This run has not finished yet (or was interrupted); rerun the same command to complete it.*\n"
    )
    body = f"""
# Video pseudolabels: {os.path.basename(os.path.normpath(args.output_dir))}

Captions of unlabeled videos, made as in Lialin et al., "Scalable and Accurate Self-supervised Multimodal
Representation Learning without Aligned Video and Text Data" (WACV 2023 Workshops): each video is cut into
consecutive **{args.clip_seconds:g}-second clips** (by timestamp; a last partial clip shorter than
{(args.min_last_clip if args.min_last_clip is not None else args.clip_seconds / 2):g} s is merged into the previous clip),
only the **center frame** of each clip is decoded, resized to **{args.image_size or "the teacher's native"}
px**, and captioned by an image captioner.

- Teacher: `{args.teacher}` (revision `{teacher_revision}`)
- Sampling: nucleus sampling `top_p={args.top_p}`, `top_k={args.top_k}` (0 = off), temperature {args.temperature},
  `num_beams=1` (no beam search), `max_new_tokens={args.max_new_tokens}`, seed {args.seed} (+ process rank)
- Made with `python -m datasets_scripts.pseudolabel` (FrozenCaptioner repository).

## Columns

`video_id` (string), `clip_index` (int32, 0-based), `start`/`end` (float64 seconds from the video stream start;
the captioned frame is the one displayed at `(start + end) / 2`), `caption` (string), `teacher` (model id),
`video_path` (the input path or URL the clip came from).
{stats_txt}
## Licence and limitations

The `license` field covers these captions only. **The source videos keep their own licences and terms of use;**
the captions are derived from them and this dataset does not grant any rights to the videos. Captions are produced
by a model from a single frame: they can be wrong (hallucinated objects, wrong counts, genders or actions), describe
nothing of the motion or audio, and inherit the social biases of the teacher and its training data (web image-text
pairs). Do not use them as ground truth.
"""
    return dataset_card(
        pretty_name="video pseudolabels",
        schema=output_schema(),
        body=body,
        license=args.license,
        splits={"train": "data/*.parquet"},
        tags=("video", "pseudolabels", "captions"),
    )


# ----------------------------------------------------------------------------------------------------------------
# main


def main(argv=None) -> dict:
    args = parse_args(argv)
    import pyarrow as pa
    from tqdm.auto import tqdm

    state = partial_state()
    rank, world = state.process_index, state.num_processes
    out_dir = args.output_dir
    data_dir, tmp_dir = os.path.join(out_dir, "data"), os.path.join(out_dir, "tmp", f"rank{rank:05d}")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(tmp_dir, exist_ok=True)
    for leftover in os.listdir(tmp_dir):  # half-written shards of a killed run of this rank
        os.remove(os.path.join(tmp_dir, leftover))
    errors = ErrorLog(os.path.join(out_dir, "errors.jsonl"))

    items, hf_ds = resolve_inputs(args)
    if args.max_videos is not None:
        items = items[: args.max_videos]
    ids = [vid for vid, _ in items]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate video_ids in the input")
    mine = [it for k, it in enumerate(items) if k % world == rank]  # deterministic, disjoint split of videos
    done = finished_video_ids(out_dir)
    errored = set() if args.retry_errors else {r.get("video_id") for r in errors.read()}
    pending = [it for it in mine if it[0] not in done and it[0] not in errored]
    skipped_done = len(mine) - len(pending)

    torch.manual_seed(args.seed + rank)
    captioner = Captioner(args.teacher, args.teacher_revision, state.device, args.dtype, args.image_size, args)
    if state.is_main_process and not os.path.exists(os.path.join(out_dir, "README.md")):
        write_text_atomic(os.path.join(out_dir, "README.md"), card_text(args, captioner.revision, None))

    prefix = f"train-{rank:05d}"
    shard_idx = next_shard_index(data_dir, prefix)
    shard_rows: list[dict] = []  # rows of completed videos not yet written
    shard_videos: list[str] = []
    queue: list[tuple[dict, int]] = []  # (video record, clip position) waiting for the captioner
    open_videos: dict[str, dict] = {}
    stats = Counter()
    err_reasons = Counter()
    t0 = time.time()

    def flush_shard():
        nonlocal shard_idx, shard_rows, shard_videos
        if not shard_rows:
            return
        table = pa.Table.from_pylist(shard_rows, schema=output_schema())
        name = f"{prefix}-{shard_idx:05d}.parquet"
        write_parquet_atomic(table, os.path.join(data_dir, name), tmp_dir)
        with open(os.path.join(out_dir, "manifest.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"shard": name, "rank": rank, "videos": shard_videos, "clips": len(shard_rows)}) + "\n")
        stats["shards"] += 1
        shard_idx += 1
        shard_rows, shard_videos = [], []

    def caption_queue(force: bool):
        nonlocal queue
        while len(queue) >= args.batch_size or (force and queue):
            batch, queue = queue[: args.batch_size], queue[args.batch_size :]
            captions = captioner([rec["frames"][pos] for rec, pos in batch])
            if args.debug_sleep:
                time.sleep(args.debug_sleep)
            for (rec, pos), cap in zip(batch, captions):
                rec["captions"][pos] = cap
                rec["remaining"] -= 1
                if rec["remaining"] == 0:
                    complete_video(rec)

    def complete_video(rec):
        for k, ((s, e), cap) in enumerate(zip(rec["spans"], rec["captions"])):
            shard_rows.append(
                dict(
                    video_id=rec["video_id"],
                    clip_index=k,
                    start=float(s),
                    end=float(e),
                    caption=cap,
                    teacher=args.teacher,
                    video_path=rec["path"],
                )
            )
        shard_videos.append(rec["video_id"])
        open_videos.pop(rec["video_id"], None)
        stats["videos"] += 1
        stats["clips"] += len(rec["spans"])
        pbar.update(1)
        pbar.set_postfix(clips=stats["clips"], errors=stats["errors"])
        if len(shard_rows) >= args.shard_size:
            flush_shard()

    pbar = tqdm(
        total=len(pending),
        desc=f"pseudolabel[{rank}/{world}]",
        unit="video",
        position=rank,
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    for rec in make_loader(pending, hf_ds, args, tmp_dir):
        if "error" in rec:
            errors.write(rec["path"], rec["error"], rec["stage"], video_id=rec["video_id"], detail=rec["detail"])
            stats["errors"] += 1
            err_reasons[rec["error"]] += 1
            pbar.update(1)
            continue
        rec["captions"] = [None] * len(rec["spans"])
        rec["remaining"] = len(rec["spans"])
        open_videos[rec["video_id"]] = rec
        queue.extend((rec, k) for k in range(len(rec["spans"])))
        caption_queue(force=False)
    caption_queue(force=True)
    flush_shard()
    pbar.close()
    assert not open_videos, "internal error: videos left half-captioned"
    try:  # remove this rank's (now empty) temp dir
        os.rmdir(tmp_dir)
        os.rmdir(os.path.dirname(tmp_dir))
    except OSError:
        pass

    elapsed = time.time() - t0
    summary = {
        "rank": rank,
        "videos_done": stats["videos"],
        "clips_done": stats["clips"],
        "videos_skipped_already_done": skipped_done,
        "videos_skipped_with_errors": stats["errors"],
        "error_reasons": dict(err_reasons),
        "shards_written": stats["shards"],
        "seconds": round(elapsed, 2),
        "clips_per_second": round(stats["clips"] / elapsed, 2) if elapsed > 0 else None,
    }
    print(f"[pseudolabel rank {rank}] " + json.dumps(summary), file=sys.stderr, flush=True)
    state.wait_for_everyone()
    if state.is_main_process:
        import glob

        import pyarrow.parquet as pq

        tables = [pq.read_table(p) for p in sorted(glob.glob(os.path.join(data_dir, "*.parquet")))]
        total = pa.concat_tables(tables) if tables else None
        err_records = errors.read()
        words = [len(c.split()) for c in total.column("caption").to_pylist()] if total is not None else []
        final = {
            "clips": total.num_rows if total is not None else 0,
            "videos": len(set(total.column("video_id").to_pylist())) if total is not None else 0,
            "errors": len({r.get("video_id") for r in err_records}),
            "mean_words": float(np.mean(words)) if words else 0.0,
        }
        write_text_atomic(os.path.join(out_dir, "README.md"), card_text(args, captioner.revision, final))
        reasons = Counter(r.get("reason") for r in err_records)
        print(
            f"[pseudolabel] done: {final['clips']} clips from {final['videos']} videos in the output; "
            f"this run: {stats['clips']} clips in {elapsed:.1f}s on rank 0 ({summary['clips_per_second']} clips/s); "
            f"skipped inputs by reason: {dict(reasons)}",
            file=sys.stderr,
            flush=True,
        )
    return summary


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
