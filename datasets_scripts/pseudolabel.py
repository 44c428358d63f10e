"""Pseudolabel unlabeled videos: caption one frame of every 8-second clip with an image captioner.

This is step 1 of the method (METHOD.md §1; Lialin et al., WACV 2023 W): every video is cut into consecutive
8 s clips **by timestamp**, one frame per clip is decoded, resized to 320x320 and captioned by BLIP-Large
(`Salesforce/blip-image-captioning-large`) with **nucleus sampling, top_p=0.9, no beams**. The frame is the one
displayed at the clip's **centre** (`--frame_selection centre`, the paper's and the default), or, with
`--frame_selection keyframe` *(ours)*, the keyframe nearest the centre inside the clip (it decodes without decoding
any other frame; a clip without a keyframe gets its exact centre frame, and the card counts those).

What it writes into `--output_dir`:

* `data/train-jSSSSSofNNNNN-rRRRRR-KKKKK.parquet` (job `S` of `--num_shards` `N`, process `R`, counter `K`): one
  row per clip, columns `video_id: string, clip_index: int32, start: float64, end: float64, caption: string,
  teacher: string, video_path: string, frame_time: float64` (presentation time of the captioned frame). A shard
  holds all clips of the videos in it and is published atomically (temp file, fsync, a rename that never overwrites).
* `errors/<job>-r<rank>.jsonl`: one JSON line per skipped input `{"path", "reason", "stage", "video_id", ...}`, one
  file per writer (safe on a shared filesystem), merged on read.
* `manifest/<job>-r<rank>.jsonl`: one line per finished shard (name, videos, clip count): a progress log.
* `README.md`: dataset card (YAML `configs` -> `data/*.parquet`, features, license, how it was made, teacher id +
  revision, sampling settings, frame selection). Written "in progress" when a job starts; the last process of the
  job to finish rewrites it with statistics over every shard then in the folder. `datasets.load_dataset(dir)` works.
* `_state/`: locks, per-process done markers (bookkeeping; not part of the dataset).

**Many processes, many jobs.** A video's job is a stable hash of its `video_id` modulo `--num_shards`, and its
process within the job the same hash over `accelerate launch`'s world size, so independent jobs (a SLURM array,
one `accelerate launch` per node) can share one output folder, run at the same time and be rerun in any order.
Ids depend only on each video's own entry (`io_utils.entry_video_id`). The processes of a job check that they
all listed the same inputs (a hash, compared at start) and take file locks: a second live run of the same job
refuses to start. There is no collective at the end: each process writes a done marker and exits; the last one
writes the final card. The process-group timeout (it only bounds the start-up checks) is `--pg_timeout` or
`$PSEUDOLABEL_PG_TIMEOUT`.

**Crash safety.** A rerun with the same command reads the `video_id` column of the finished shards that can hold
this job's videos and the error records; those videos are skipped, the rest is redone. Because shards are atomic
and never split a video, every clip ends up in the output exactly once, whatever moment the previous run was killed
at.

**Throughput.** Fetching (URL download), probing, decoding and resizing run in a pool of `--num_workers` spawned
processes fed from a bounded work queue, unordered: one slow download or long video never stalls the others, and
the main process captions (a partial batch when the decoders have nothing ready for `--idle_flush` seconds).

Examples:

    python -m datasets_scripts.pseudolabel --input /data/howto100m/videos --output_dir out/howto100m_blip
    accelerate launch -m datasets_scripts.pseudolabel --input videos.txt --output_dir out/pl --batch_size 256 \
        --shard_id $SLURM_ARRAY_TASK_ID --num_shards $SLURM_ARRAY_TASK_COUNT
"""

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections import Counter

import numpy as np

from datasets_scripts.io_utils import (
    IDLE,
    ErrorLog,
    FileLock,
    dataset_card,
    download,
    imap_unordered,
    is_url,
    list_file_entries,
    list_video_folder,
    next_shard_index,
    partial_state,
    read_error_records,
    stable_hash,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from datasets_scripts.video_io import (
    FRAME_SELECTIONS,
    VideoDecodeError,
    clip_spans,
    probe_video,
    read_clip_frames,
    resize_frame,
)


DEFAULT_TEACHER = "Salesforce/blip-image-captioning-large"
PG_TIMEOUT_ENV = "PSEUDOLABEL_PG_TIMEOUT"
SHARD_NAME = re.compile(r"^train-j(\d{5})of(\d{5})-r(\d{5})-(\d{5})\.parquet$")
LEGACY_SHARD_NAME = re.compile(r"^train-(\d{5})-(\d{5})\.parquet$")  # written before jobs existed (rank, counter)
METADATA_KEY = b"frozencaptioner.pseudolabel"  # parquet footer: frame selection and keyframe fallbacks per shard


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
            ("frame_time", pa.float64()),
        ]
    )


def _default_pg_timeout() -> float:
    return float(os.environ.get(PG_TIMEOUT_ENV, "1800"))


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
    p.add_argument("--shard_id", type=int, default=0, help="this job's index among --num_shards independent jobs")
    p.add_argument("--num_shards", type=int, default=1, help="independent jobs sharing the input and output_dir")
    p.add_argument("--teacher", default=DEFAULT_TEACHER, help="any HF image-captioning model id or local dir")
    p.add_argument("--teacher_revision", default=None, help="hub revision (branch, tag or commit) of the teacher")
    p.add_argument("--prompt", default=None, help="optional text prompt for conditional captioning")
    p.add_argument("--clip_seconds", type=float, default=8.0)
    p.add_argument("--min_last_clip", type=float, default=None, help="default clip_seconds/2; see clip_spans")
    p.add_argument("--frame_selection", default="centre", choices=FRAME_SELECTIONS,
                   help="centre: the frame displayed at the clip's centre (the paper); keyframe: the keyframe "
                   "nearest the centre inside the clip, else the centre (ours, faster)")  # fmt: skip
    p.add_argument("--image_size", type=int, default=320, help="captioner input size (square); 0 = teacher's own")
    p.add_argument("--batch_size", type=int, default=64, help="frames per captioner call")
    p.add_argument("--num_workers", type=int, default=4, help="decoding processes (0 = decode in the main process)")
    p.add_argument("--max_in_flight", type=int, default=None, help="videos submitted at once (default 2 x workers)")
    p.add_argument("--idle_flush", type=float, default=0.5,
                   help="caption a partial batch when no decoded video arrived for this many seconds")  # fmt: skip
    p.add_argument("--shard_size", type=int, default=5000, help="clips per parquet shard (whole videos only)")
    p.add_argument("--top_p", type=float, default=0.9)
    p.add_argument("--top_k", type=int, default=0, help="0 = pure nucleus sampling (transformers' default is 50)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max_new_tokens", type=int, default=30)
    p.add_argument("--min_new_tokens", type=int, default=None, help="fixed-length captions (benchmarks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav", "torchcodec"])
    p.add_argument("--download_timeout", type=float, default=60.0)
    p.add_argument("--pg_timeout", type=float, default=None,
                   help=f"process-group timeout in seconds for the start-up checks (default ${PG_TIMEOUT_ENV} "
                   "or 1800)")  # fmt: skip
    p.add_argument("--retry_errors", action="store_true", help="retry inputs already listed in the error records")
    p.add_argument("--max_videos", type=int, default=None, help="only the first N inputs (smoke tests)")
    p.add_argument("--license", default="other", help="license field of the dataset card")
    p.add_argument("--no_progress", action="store_true")
    # tests only: slow every captioner call down; delay rank R by S seconds before its done marker ("R:S");
    # hold every process after start-up until a file exists
    p.add_argument("--debug_sleep", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--debug_delay_rank", default=None, help=argparse.SUPPRESS)
    p.add_argument("--debug_start_gate", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pg_timeout is None:
        args.pg_timeout = _default_pg_timeout()
    if not 0 <= args.shard_id < args.num_shards:
        p.error(f"--shard_id must be in [0, --num_shards), got {args.shard_id} of {args.num_shards}")
    return args


def job_tag(shard_id: int, num_shards: int) -> str:
    return f"j{shard_id:05d}of{num_shards:05d}"


def assign_video(video_id: str, num_shards: int, world: int) -> tuple[int, int]:
    """`(job, rank)` of a video: a stable hash of its id, so it depends on nothing else (not the list, not the
    order, not the other jobs)."""
    h = stable_hash(video_id)
    return h % num_shards, (h // num_shards) % world


def inputs_hash(items) -> str:
    h = hashlib.sha1()
    for vid, source in items:
        h.update(f"{vid}\t{source}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


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
# decoding (runs in the worker processes)


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
    """Fetch, probe, cut into clips by timestamp, decode one frame per clip (`args.frame_selection`), resize.
    Never raises. The record carries the seconds spent per stage (`fetch`, `decode`, `resize`)."""
    display, local, is_temp, stage = str(source), None, False, "download"
    timings = {"fetch": 0.0, "decode": 0.0, "resize": 0.0}
    t = time.perf_counter()
    try:
        local, display, is_temp = _materialize(source, hf_ds, args.video_column, args.download_timeout, tmp_dir)
        timings["fetch"], t = time.perf_counter() - t, time.perf_counter()
        stage = "probe"
        info = probe_video(local)
        spans = clip_spans(info.duration, args.clip_seconds, args.min_last_clip)
        stage = "decode"
        frames, frame_times, fell_back = read_clip_frames(
            local, spans, getattr(args, "frame_selection", "centre"), backend=args.backend
        )
        timings["decode"], t = time.perf_counter() - t, time.perf_counter()
        if args.image_size:
            frames = np.stack([resize_frame(f, args.image_size, mode="exact") for f in frames])
        timings["resize"] = time.perf_counter() - t
        return {"video_id": vid, "path": display, "spans": spans, "frames": frames, "frame_times": frame_times,
                "fell_back": fell_back, "timings": timings}  # fmt: skip
    except VideoDecodeError as e:
        return {"video_id": vid, "path": display, "error": e.reason, "detail": e.detail[:300], "stage": stage}
    except Exception as e:  # anything else a broken file can trigger: record, skip, keep going
        return {"video_id": vid, "path": display, "error": "unexpected", "detail": repr(e)[:300], "stage": stage}
    finally:
        if is_temp and local and os.path.exists(local):
            os.remove(local)


_WORKER: dict = {}  # per worker process: the HF dataset (if any), args, temp dir (sent once, by the initializer)


def _init_worker(hf_ds, args, tmp_dir):
    _WORKER.update(hf_ds=hf_ds, args=args, tmp_dir=tmp_dir)


def _decode_task(item) -> dict:
    vid, source = item
    return decode_video_item(vid, source, _WORKER["hf_ds"], _WORKER["args"], _WORKER["tmp_dir"])


def _crashed(item) -> dict:
    vid, source = item
    return {"video_id": vid, "path": str(source), "error": "worker_crashed", "stage": "decode",
            "detail": "a decoding process died twice while this video was in flight"}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# teacher


class Captioner:
    """Any HF image-captioning model (AutoProcessor + AutoModelForImageTextToText, falling back to
    AutoModelForCausalLM for GIT-style models), run with nucleus sampling. `model`/`processor` may be given
    instead of loading `name` (benchmarks). `timings` accumulates seconds in `preprocess` and `generate`."""

    def __init__(self, name, revision, device, dtype: str, image_size: int, args, model=None, processor=None):
        import torch
        from transformers import AutoProcessor

        self.torch, self.device, self.args = torch, device, args
        if dtype == "auto":
            if getattr(device, "type", str(device)) == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        self.dtype = getattr(torch, dtype)
        self.processor = processor if processor is not None else AutoProcessor.from_pretrained(name, revision=revision)
        model = model if model is not None else self._load_model(name, revision)
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.name = name
        self.revision = revision or getattr(self.model.config, "_commit_hash", None) or "local"
        self.timings = Counter()
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
        self.prompt = self._normalise(args.prompt) if getattr(args, "prompt", None) else None

    def _normalise(self, text: str) -> str:
        """`text` as the tokenizer gives it back (BLIP's BERT tokenizer lower-cases and strips accents), whitespace
        collapsed: the form an echoed prompt has in the decoded captions."""
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            text = tokenizer.decode(ids, skip_special_tokens=True)
        return " ".join(text.split())

    def strip_prompt(self, text: str) -> str:
        """Collapse whitespace and remove an echoed prompt (compared case-insensitively, after normalisation)."""
        text = " ".join(text.split())
        if self.prompt and text.lower().startswith(self.prompt.lower()):
            text = text[len(self.prompt) :].strip()
        return text

    @staticmethod
    def _load_model(name, revision):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        try:
            return AutoModelForImageTextToText.from_pretrained(name, revision=revision)
        except ValueError:
            return AutoModelForCausalLM.from_pretrained(name, revision=revision)

    def __call__(self, frames: list[np.ndarray]) -> list[str]:
        torch = self.torch
        t = time.perf_counter()
        kwargs = {"images": list(frames), "return_tensors": "pt", **self.size_kwargs}
        if self.args.prompt:
            kwargs["text"] = [self.args.prompt] * len(frames)
        inputs = self.processor(**kwargs)
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        self.timings["preprocess"] += time.perf_counter() - t
        t = time.perf_counter()
        lengths = {"max_new_tokens": self.args.max_new_tokens}
        if getattr(self.args, "min_new_tokens", None):
            lengths["min_new_tokens"] = self.args.min_new_tokens
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                **self.extra,
                **lengths,
                do_sample=True,
                top_p=self.args.top_p,
                top_k=self.args.top_k,
                temperature=self.args.temperature,
                num_beams=1,
            )
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        self.timings["generate"] += time.perf_counter() - t
        return [self.strip_prompt(t) for t in texts]


# ----------------------------------------------------------------------------------------------------------------
# resume state


def finished_videos(output_dir: str, shard_id: int = 0, num_shards: int = 1) -> tuple[set[str], set[str]]:
    """`(video_ids, legacy_paths)` of the finished shards that can hold job `shard_id`'s videos (the shards are the
    source of truth; the manifest is only a log). Shards of the other jobs of the same `num_shards` cannot (a
    video's job is a hash of its id) and are not read. `legacy_paths`: `video_path` of shards written before video
    ids depended only on their entry (`train-RRRRR-NNNNN.parquet`): those inputs count as done too."""
    import pyarrow.parquet as pq

    done, legacy = set(), set()
    for p in sorted(glob.glob(os.path.join(output_dir, "data", "*.parquet"))):
        name = os.path.basename(p)
        m = SHARD_NAME.match(name)
        if m and int(m.group(2)) == num_shards and int(m.group(1)) != shard_id:
            continue
        if LEGACY_SHARD_NAME.match(name):
            cols = pq.read_table(p, columns=["video_id", "video_path"]).to_pydict()
            done.update(cols["video_id"])
            legacy.update(cols["video_path"])
        else:
            done.update(pq.read_table(p, columns=["video_id"]).column("video_id").to_pylist())
    return done, legacy


def output_statistics(output_dir: str) -> dict:
    """Statistics over every shard in `output_dir/data`, streamed shard by shard, reading only `video_id` and
    `caption` (and the footers): clips, videos, mean caption words, clips per frame-selection mode, keyframe-mode
    clips that fell back to the exact centre, skipped inputs."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    clips = videos = words = fallbacks = 0
    modes = Counter()
    for p in sorted(glob.glob(os.path.join(output_dir, "data", "*.parquet"))):
        pf = pq.ParquetFile(p)
        meta = json.loads((pf.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}"))
        table = pf.read(columns=["video_id", "caption"])
        clips += table.num_rows
        videos += pc.count_distinct(table.column("video_id")).as_py()  # a video never spans two shards
        words += pc.sum(pc.list_value_length(pc.utf8_split_whitespace(table.column("caption")))).as_py() or 0
        modes[meta.get("frame_selection", "centre")] += table.num_rows
        fallbacks += int(meta.get("keyframe_fallbacks", 0))
    errors = {r.get("video_id") for r in read_error_records(output_dir)}
    return {"clips": clips, "videos": videos, "errors": len(errors), "mean_words": words / clips if clips else 0.0,
            "frame_selection": dict(modes), "keyframe_fallbacks": fallbacks}  # fmt: skip


def card_text(args, teacher_revision: str, stats: dict | None) -> str:
    if stats:
        modes = ", ".join(f"`{m}` {n}" for m, n in sorted(stats.get("frame_selection", {}).items())) or "none"
        stats_txt = (
            f"\n## Statistics\n\n{stats['clips']} clips from {stats['videos']} videos; {stats['errors']} inputs "
            f"skipped (see `errors/`); mean caption length {stats['mean_words']:.1f} words. Clips per frame "
            f"selection: {modes}; keyframe-mode clips without a keyframe in their span, captioned at their exact "
            f"centre instead: {stats.get('keyframe_fallbacks', 0)}. Written by the last process of job "
            f"{args.shard_id} of {args.num_shards} to finish, over every shard then in the folder.\n"
        )
    else:
        stats_txt = "\n*This run has not finished yet (or was interrupted); rerun the same command to complete it.*\n"
    selection = (
        "the frame displayed at the clip's **centre** (`--frame_selection centre`, the paper's)"
        if args.frame_selection == "centre"
        else "the **keyframe** nearest the clip's centre inside the clip (`--frame_selection keyframe`, ours: it "
        "decodes without decoding other frames; a clip without a keyframe gets its exact centre)"
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
- Frame selection: `{args.frame_selection}`: {selection}
- Made with `python -m datasets_scripts.pseudolabel` (FrozenCaptioner repository).

## Columns

`video_id` (string), `clip_index` (int32, 0-based), `start`/`end` (float64 seconds from the video stream start),
`caption` (string), `teacher` (model id), `video_path` (the input path or URL the clip came from), `frame_time`
(float64 seconds from the video stream start: presentation time of the captioned frame; in `centre` mode the frame
displayed at `(start + end) / 2`, in `keyframe` mode the keyframe).
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
# start-up: same inputs everywhere, one live run per job


def _all_gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def check_same_inputs(digests: list[str]) -> None:
    """Every process of the run must have listed the same inputs (else videos would be missed or done twice)."""
    if len(set(digests)) != 1:
        raise SystemExit(
            "the processes of this run listed different inputs (hash of (video_id, source) per rank: "
            f"{digests}); give every process the same --input (a shared list file, not a folder still being "
            "written), or write a list file first"
        )


def verify_same_inputs(digest: str, world: int) -> None:
    """Gather every process's input hash (a collective) and `check_same_inputs`."""
    check_same_inputs(_all_gather(digest, world))


class JobLocks:
    """One live run per job: the main process holds `<job>.lock` during start-up and checks that no process of an
    earlier run of the job still holds its `<job>-rRRRRR.lock`; then every process takes its own and keeps it until
    it exits (a `kill -9` releases it)."""

    def __init__(self, out_dir: str, job: str, rank: int, world: int, is_main: bool):
        self.dir, self.job, self.rank, self.world, self.is_main = os.path.join(out_dir, "_state", "locks"), job, rank, world, is_main  # fmt: skip
        self.job_lock = FileLock(os.path.join(self.dir, f"{job}.lock"))
        self.rank_lock = FileLock(os.path.join(self.dir, f"{job}-r{rank:05d}.lock"))

    def acquire(self, digest: str) -> str:
        """Checks inputs and locks on every process; returns this run's id (from the main process). On a refusal
        every lock taken here is released again (the process may go on, e.g. a test or a notebook)."""
        try:
            return self._acquire(digest)
        except BaseException:
            self.job_lock.release()
            self.rank_lock.release()
            raise

    def _acquire(self, digest: str) -> str:
        status = "ok"
        if self.is_main:
            if not self.job_lock.acquire():
                status = f"another run of job {self.job} is starting ({self.job_lock.path} is locked)"
            else:
                held = [
                    p for p in sorted(glob.glob(os.path.join(self.dir, f"{self.job}-r*.lock"))) if FileLock.is_held(p)
                ]
                if held:
                    status = f"another run of job {self.job} is still running (holds {held[0]})"
        gathered = _all_gather((digest, status, uuid.uuid4().hex[:12]), self.world)
        if any(g[1] != "ok" for g in gathered):
            raise SystemExit(f"refusing to start: {gathered[0][1]}")
        check_same_inputs([g[0] for g in gathered])
        ok = self.rank_lock.acquire()
        if not all(_all_gather(ok, self.world)):
            raise SystemExit(f"refusing to start: a process of another run of job {self.job} holds a rank lock")
        self.job_lock.release()  # every process of this run now holds its rank lock
        return gathered[0][2]

    def release(self) -> None:
        self.rank_lock.release()


# ----------------------------------------------------------------------------------------------------------------
# main


def main(argv=None) -> dict:
    return run(parse_args(argv))


def run(args, captioner=None) -> dict:
    """Pseudolabel this process's part of the input (see the module docstring). `captioner`: a ready `Captioner`
    (benchmarks); by default `args.teacher` is loaded. Returns this process's summary."""

    state = partial_state(timeout_seconds=args.pg_timeout)
    rank, world = state.process_index, state.num_processes
    job = job_tag(args.shard_id, args.num_shards)
    out_dir = args.output_dir
    data_dir, tmp_dir = os.path.join(out_dir, "data"), os.path.join(out_dir, "tmp", f"{job}-r{rank:05d}")
    os.makedirs(data_dir, exist_ok=True)

    items, hf_ds = resolve_inputs(args)
    if args.max_videos is not None:
        items = items[: args.max_videos]
    ids = [vid for vid, _ in items]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate video_ids in the input")
    locks = JobLocks(out_dir, job, rank, world, state.is_main_process)
    run_id = locks.acquire(inputs_hash(items))  # collectives: same inputs everywhere, one live run per job
    try:
        return _run_locked(args, state, captioner, items, hf_ds, run_id, job, tmp_dir, data_dir)
    finally:
        locks.release()


def _run_locked(args, state, captioner, items, hf_ds, run_id, job, tmp_dir, data_dir) -> dict:
    """`run` after start-up (inputs listed, locks held)."""
    import pyarrow as pa
    import torch
    from tqdm.auto import tqdm

    rank, world, out_dir = state.process_index, state.num_processes, args.output_dir

    os.makedirs(tmp_dir, exist_ok=True)
    for leftover in os.listdir(tmp_dir):  # half-written shards / downloads of a killed run of this process
        os.remove(os.path.join(tmp_dir, leftover))
    errors = ErrorLog(os.path.join(out_dir, "errors", f"{job}-r{rank:05d}.jsonl"))
    mine = [it for it in items if assign_video(it[0], args.num_shards, world) == (args.shard_id, rank)]
    done, legacy_paths = finished_videos(out_dir, args.shard_id, args.num_shards)
    errored = set() if args.retry_errors else {r.get("video_id") for r in read_error_records(out_dir)}
    pending = [
        it for it in mine
        if it[0] not in done and it[0] not in errored and (hf_ds is not None or str(it[1]) not in legacy_paths)
    ]  # fmt: skip
    skipped_done = len(mine) - len(pending)
    del items, done

    torch.manual_seed(args.seed + rank)
    if captioner is None:
        captioner = Captioner(args.teacher, args.teacher_revision, state.device, args.dtype, args.image_size, args)
    if state.is_main_process:  # "in progress" until the last process of this job rewrites it
        write_text_atomic(os.path.join(out_dir, "README.md"), card_text(args, captioner.revision, None))
    if args.debug_start_gate:
        while not os.path.exists(args.debug_start_gate):
            time.sleep(0.05)

    prefix = f"train-{job}-r{rank:05d}"
    shard_idx = next_shard_index(data_dir, prefix)
    shard_rows: list[dict] = []  # rows of completed videos not yet written
    shard_videos: list[str] = []
    shard_fallbacks = 0
    queue: list[tuple[dict, int]] = []  # (video record, clip position) waiting for the captioner
    open_videos: dict[str, dict] = {}
    stats = Counter()
    err_reasons = Counter()
    worker_seconds = Counter()
    t0 = time.time()
    manifest = os.path.join(out_dir, "manifest", f"{job}-r{rank:05d}.jsonl")
    os.makedirs(os.path.dirname(manifest), exist_ok=True)

    def flush_shard():
        nonlocal shard_idx, shard_rows, shard_videos, shard_fallbacks
        if not shard_rows:
            return
        meta = {"frame_selection": args.frame_selection, "keyframe_fallbacks": shard_fallbacks}
        table = pa.Table.from_pylist(shard_rows, schema=output_schema()).replace_schema_metadata(
            {METADATA_KEY: json.dumps(meta).encode()}
        )
        while True:  # never overwrite: a name taken since we looked (it should not happen) moves us on
            name = f"{prefix}-{shard_idx:05d}.parquet"
            try:
                write_parquet_atomic(table, os.path.join(data_dir, name), tmp_dir, overwrite=False)
                break
            except FileExistsError:
                shard_idx += 1
        with open(manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps({"shard": name, "rank": rank, "videos": shard_videos, "clips": len(shard_rows)}) + "\n")
        stats["shards"] += 1
        shard_idx += 1
        shard_rows, shard_videos, shard_fallbacks = [], [], 0

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
        nonlocal shard_fallbacks
        for k, ((s, e), cap, ft) in enumerate(zip(rec["spans"], rec["captions"], rec["frame_times"])):
            shard_rows.append(
                dict(
                    video_id=rec["video_id"],
                    clip_index=k,
                    start=float(s),
                    end=float(e),
                    caption=cap,
                    teacher=args.teacher,
                    video_path=rec["path"],
                    frame_time=float(ft),
                )
            )
        shard_videos.append(rec["video_id"])
        shard_fallbacks += sum(rec["fell_back"])
        stats["keyframe_fallbacks"] += sum(rec["fell_back"])
        open_videos.pop(rec["video_id"], None)
        rec["frames"] = None
        stats["videos"] += 1
        stats["clips"] += len(rec["spans"])
        pbar.update(1)
        pbar.set_postfix(clips=stats["clips"], errors=stats["errors"])
        if len(shard_rows) >= args.shard_size:
            flush_shard()

    pbar = tqdm(
        total=len(pending),
        desc=f"pseudolabel[{job} {rank}/{world}]",
        unit="video",
        position=rank,
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    results = imap_unordered(
        _decode_task,
        pending,
        args.num_workers,
        max_in_flight=args.max_in_flight,
        idle_timeout=args.idle_flush,
        initializer=_init_worker,
        initargs=(hf_ds, args, tmp_dir),
        on_crash=_crashed,
    )
    for rec in results:
        if rec is IDLE:  # the decoders have nothing ready: caption what is queued rather than wait
            caption_queue(force=True)
            continue
        if "error" in rec:
            errors.write(rec["path"], rec["error"], rec["stage"], video_id=rec["video_id"], detail=rec["detail"])
            stats["errors"] += 1
            err_reasons[rec["error"]] += 1
            pbar.update(1)
            continue
        worker_seconds.update(rec["timings"])
        rec["captions"] = [None] * len(rec["spans"])
        rec["remaining"] = len(rec["spans"])
        open_videos[rec["video_id"]] = rec
        queue.extend((rec, k) for k in range(len(rec["spans"])))
        caption_queue(force=False)
    caption_queue(force=True)
    flush_shard()
    pbar.close()
    assert not open_videos, "internal error: videos left half-captioned"
    try:  # remove this process's (now empty) temp dir; the shared tmp/ stays (another process may be using it)
        os.rmdir(tmp_dir)
    except OSError:
        pass

    elapsed = time.time() - t0
    summary = {
        "job": job,
        "rank": rank,
        "videos_done": stats["videos"],
        "clips_done": stats["clips"],
        "videos_skipped_already_done": skipped_done,
        "videos_skipped_with_errors": stats["errors"],
        "error_reasons": dict(err_reasons),
        "shards_written": stats["shards"],
        "keyframe_fallbacks": stats["keyframe_fallbacks"],
        "seconds": round(elapsed, 2),
        "clips_per_second": round(stats["clips"] / elapsed, 2) if elapsed > 0 else None,
        # worker stages summed over the decoding processes; preprocess/generate in this process
        "seconds_by_stage": {
            "fetch": round(worker_seconds["fetch"], 3),
            "decode": round(worker_seconds["decode"], 3),
            "preprocess": round(worker_seconds["resize"] + captioner.timings["preprocess"], 3),
            "generate": round(captioner.timings["generate"], 3),
        },
        # busy seconds of the decoding processes (fetch + decode + resize): clips / this = one worker's capacity
        "decode_worker_seconds": round(sum(worker_seconds.values()), 3),
    }
    print(f"[pseudolabel {job} rank {rank}] " + json.dumps(summary), file=sys.stderr, flush=True)
    if args.debug_delay_rank:
        delay_rank, seconds = args.debug_delay_rank.split(":")
        if int(delay_rank) == rank:
            time.sleep(float(seconds))

    # no collective here: a done marker per process; the last of this run to finish writes the final card
    done_dir = os.path.join(out_dir, "_state", "done", job)
    write_json_atomic(os.path.join(done_dir, f"{run_id}-r{rank:05d}.json"), summary)
    finished = len(glob.glob(os.path.join(done_dir, f"{run_id}-r*.json")))
    summary["wrote_final_card"] = finished == world
    if finished == world:
        final = output_statistics(out_dir)
        write_text_atomic(os.path.join(out_dir, "README.md"), card_text(args, captioner.revision, final))
        print(
            f"[pseudolabel {job}] done: {final['clips']} clips from {final['videos']} videos in the output; "
            f"{final['errors']} inputs skipped; the last process of this run ({rank}) wrote the card",
            file=sys.stderr,
            flush=True,
        )
    return summary


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
