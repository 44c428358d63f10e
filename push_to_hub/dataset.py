"""Stage the pseudolabel output (the "released captions") as a Hub dataset repo folder, validate it, upload it.

`python -m push_to_hub dataset --data-dir PSEUDOLABEL_OUT --repo-id org/name [--dry-run STAGE_DIR] ...`

Input: the folder written by `datasets_scripts.pseudolabel`: `data/*.parquet` (columns `video_id, clip_index, start,
end, caption, teacher`, plus `video_path`), `README.md` (card with YAML `configs`), `errors.jsonl`, `manifest.jsonl`.

Staged (and uploaded, nothing else): `data/*.parquet` and `README.md`.

* The `video_path` column is dropped unless `--keep-video-path`: it holds the paths or URLs of the machine that ran
  the pipeline. `errors.jsonl` / `manifest.jsonl` stay local for the same reason.
* The card is rebuilt from `templates/dataset_card.md` and the pipeline's own card: YAML front matter keeps the
  pipeline's `configs` (checked against the staged files) and gets license, task categories, tags, size category,
  `dataset_info.features`; the text names the teacher model(s) (from the `teacher` column), the sampling settings,
  the clip length (stated and measured), the source videos' licence caveats and the paper's limitations (captions of
  one frame hallucinate and carry the teacher's biases, no temporal content). The pipeline's card text is kept
  at the end.
* Validation (`validate_staged_dataset`): `datasets.load_dataset(stage_dir)` loads every row with the expected
  columns, and the card's metadata and text hold the facts above. A failure stops the push.
"""

import fnmatch
import glob
import json
import os
import re
import shutil
import statistics
import tempfile


TEMPLATE = os.path.join(os.path.dirname(__file__), "templates", "dataset_card.md")
REQUIRED_COLUMNS = ("video_id", "clip_index", "start", "end", "caption", "teacher")
PRIVATE_COLUMNS = ("video_path",)
DATASET_ALLOW_PATTERNS = ["README.md", "data/*.parquet"]
COLUMN_DOCS = {
    "video_id": "identifier of the source video",
    "clip_index": "0-based position of the clip in its video",
    "start": "clip start, seconds from the start of the video stream",
    "end": "clip end (exclusive), seconds",
    "caption": "the teacher's caption of the clip's center frame",
    "teacher": "Hub id (or name) of the image captioner that wrote the caption",
    "video_path": "path or URL the clip was read from when the captions were made",
    "frame_time": "presentation time (s from the stream start) of the captioned frame: the frame shown at the clip "
    "centre, or the keyframe in keyframe mode",
}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):  # fmt: skip
        if n < limit:
            return name
    return "1B<n<10B"


def _card_facts(body: str) -> dict:
    """Settings the pipeline wrote into its card text (datasets_scripts.pseudolabel.card_text), when present."""
    facts = {}
    if m := re.search(r"Teacher: `([^`]+)`(?: \(revision `([^`]+)`\))?", body):
        facts["teacher"], facts["teacher_revision"] = m.group(1), m.group(2)
    if m := re.search(r"Sampling: (.+?)(?:\n- |\n\n|$)", body, re.DOTALL):
        facts["sampling"] = " ".join(m.group(1).split())
    if m := re.search(r"\*\*([\d.]+)-second clips\*\*", body):
        facts["clip_seconds"] = float(m.group(1))
    if m := re.search(r"resized to \*\*(\d+)\s*\n?\s*px\*\*", body):
        facts["image_size"] = int(m.group(1))
    return facts


def _demote_headings(text: str, levels: int = 2) -> str:
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" * levels + line if not fenced and re.match(r"^#+ ", line) else line)
    return "\n".join(out)


def stage_dataset(
    data_dir: str,
    stage_dir: str,
    repo_id: str,
    license: str | None = None,
    pretty_name: str | None = None,
    clip_seconds: float | None = None,
    image_size: int | None = None,
    top_p: float = 0.9,
    source_note: str | None = None,
    source_datasets: list[str] | None = None,
    keep_video_path: bool = False,
    log=print,
):
    """Write the dataset repo folder for pseudolabel output `data_dir` into `stage_dir` (empty or missing).

    Settings the pipeline's card states (teacher revision, sampling, clip length, image size) are read from it;
    `clip_seconds` / `image_size` given here win; without either, the paper's values (8 s, 320 px, top_p=0.9) are
    used and the card says so. Returns the `DatasetCard`.
    """
    import pyarrow.parquet as pq
    from datasets import Features
    from huggingface_hub import DatasetCard, DatasetCardData

    shards = sorted(glob.glob(os.path.join(data_dir, "data", "*.parquet")))
    if not shards:
        raise FileNotFoundError(f"no data/*.parquet in {data_dir}")
    if os.path.isdir(stage_dir) and os.listdir(stage_dir):
        raise FileExistsError(f"staging folder {stage_dir} is not empty")
    os.makedirs(os.path.join(stage_dir, "data"), exist_ok=True)

    # ---- data: copy shards, dropping machine-local columns
    durations, words, videos, teachers, num_rows, num_bytes, schema = [], [], set(), set(), 0, 0, None
    dropped: set[str] = set()
    for shard in shards:
        table = pq.read_table(shard)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{shard} lacks columns {missing}")
        drop = [c for c in PRIVATE_COLUMNS if c in table.column_names and not keep_video_path]
        if drop:
            table = table.drop_columns(drop)
            dropped.update(drop)
        if schema is not None and not table.schema.equals(schema):
            raise ValueError(f"{shard}: schema differs from the first shard's")
        schema = table.schema
        pq.write_table(table, os.path.join(stage_dir, "data", os.path.basename(shard)))
        cols = table.select(["video_id", "start", "end", "caption", "teacher"]).to_pydict()
        num_rows += table.num_rows
        num_bytes += table.nbytes
        videos.update(cols["video_id"])
        teachers.update(cols["teacher"])
        durations += [e - s for s, e in zip(cols["start"], cols["end"])]
        words += [len(str(c).split()) for c in cols["caption"]]
    if num_rows == 0:
        raise ValueError(f"{data_dir} holds no rows")

    # ---- card: the pipeline's metadata + ours
    readme = os.path.join(data_dir, "README.md")
    if os.path.exists(readme):
        source_card = DatasetCard.load(readme)
        meta, pipeline_body = source_card.data.to_dict(), source_card.text.strip()
    else:
        log(f"warning: {readme} missing; writing a card from scratch")
        meta, pipeline_body = {}, ""
    facts = _card_facts(pipeline_body)
    clip_seconds = clip_seconds or facts.get("clip_seconds") or 8.0
    image_size = image_size or facts.get("image_size") or 320
    sampling = facts.get("sampling") or f"nucleus sampling `top_p={top_p:g}`, `num_beams=1` (no beam search)"
    if "top_p" not in sampling:
        sampling += f"; nucleus sampling `top_p={top_p:g}`"
    configs = meta.get("configs") or [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]  # fmt: skip
    staged = {
        os.path.relpath(p, stage_dir).replace(os.sep, "/") for p in glob.glob(os.path.join(stage_dir, "data", "*"))
    }
    for config in configs:
        data_files = config.get("data_files") or []
        data_files = [data_files] if isinstance(data_files, (str, dict)) else data_files
        for entry in data_files:
            patterns = entry.get("path") if isinstance(entry, dict) else entry
            for pattern in [patterns] if isinstance(patterns, str) else patterns:
                if not any(fnmatch.fnmatch(f, pattern) for f in staged):
                    raise ValueError(f"card config {config.get('config_name')!r}: {pattern!r} matches no staged file")
    features = Features.from_arrow_schema(schema)
    license = license or meta.get("license") or "other"
    tags = list(dict.fromkeys([*(meta.get("tags") or []), "video", "video-captioning", "pseudolabels", "synthetic"]))
    extra = {k: v for k, v in meta.items() if k not in ("license", "tags", "pretty_name", "configs", "dataset_info")}
    card_data = DatasetCardData(
        **extra,
        license=license,
        pretty_name=pretty_name or meta.get("pretty_name") or repo_id.split("/")[-1],
        language=meta.get("language") or ["en"],
        task_categories=meta.get("task_categories") or ["video-text-to-text"],
        size_categories=[_size_category(num_rows)],
        source_datasets=source_datasets or meta.get("source_datasets"),
        tags=tags,
        configs=configs,
        dataset_info={
            "features": features._to_yaml_list(),
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": num_rows}],
        },
    )
    if license == "other" and "license_name" not in extra:
        card_data.license_name = "captions-only-see-card"
    columns_table = "\n".join(f"| `{name}` | {dtype} | {COLUMN_DOCS.get(name, '')} |" for name, dtype in zip(schema.names, schema.types))  # fmt: skip
    rule = " (a last partial clip shorter than half a clip is merged into the previous one)"
    card = DatasetCard.from_template(
        card_data,
        template_path=TEMPLATE,
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        num_rows=f"{num_rows:,}",
        num_videos=f"{len(videos):,}",
        mean_words=f"{statistics.fmean(words):.1f}",
        clip_seconds=f"{clip_seconds:g}",
        clip_rule=rule if "merged into the previous clip" in pipeline_body or not pipeline_body else "",
        min_clip=f"{min(durations):.2f}",
        max_clip=f"{max(durations):.2f}",
        median_clip=f"{statistics.median(durations):.2f}",
        image_size=image_size,
        teacher_list=", ".join(f"`{t}`" for t in sorted(teachers)),
        teacher_revision=facts.get("teacher_revision"),
        sampling=sampling,
        columns_table=columns_table,
        license=f"`{license}`",
        source_note=source_note or "each video's own licence, set by its uploader and hosting site",
        dropped_columns=", ".join(f"`{c}`" for c in sorted(dropped)),
        pipeline_body=_demote_headings(pipeline_body) if pipeline_body else "",
    )
    card.save(os.path.join(stage_dir, "README.md"))
    return card


def validate_staged_dataset(stage_dir: str, expect_rows: int | None = None) -> dict:
    """Raise `RuntimeError` unless `load_dataset(stage_dir)` works and the card holds the required facts."""
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from push_to_hub.model import assert_no_token
    from push_to_hub.upload import files_to_upload

    _, stray = files_to_upload(stage_dir, DATASET_ALLOW_PATTERNS)
    if stray:
        raise RuntimeError(f"files outside the allowlist in {stage_dir}: {stray}")
    assert_no_token(stage_dir)
    with tempfile.TemporaryDirectory(prefix="frozencaptioner-ds-cache-") as cache_dir:
        try:
            ds = load_dataset(stage_dir, split="train", cache_dir=cache_dir)
        except Exception as e:
            raise RuntimeError(f"load_dataset({stage_dir!r}) failed: {type(e).__name__}: {e}") from e
        missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
        if missing:
            raise RuntimeError(f"loaded dataset lacks columns {missing}")
        if expect_rows is not None and ds.num_rows != expect_rows:
            raise RuntimeError(f"loaded {ds.num_rows} rows, expected {expect_rows}")
        teachers = set(ds.unique("teacher"))
        num_rows, columns = ds.num_rows, ds.column_names
        del ds
    card = DatasetCard.load(os.path.join(stage_dir, "README.md"))
    meta, text = card.data.to_dict(), card.text
    problems = [k for k in ("license", "configs", "task_categories", "size_categories") if not meta.get(k)]
    problems += [f"teacher {t!r} not named" for t in teachers if t not in text]
    for needle in ("top_p", "-second clips", "center frame", "licen", "allucinat", "bias"):
        if needle.lower() not in text.lower():
            problems.append(f"card text lacks {needle!r}")
    if problems:
        raise RuntimeError(f"dataset card problems: {problems}")
    return {"num_rows": num_rows, "columns": columns, "teachers": sorted(teachers)}


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", required=True, help="pseudolabel output folder (data/*.parquet + README.md)")
    parser.add_argument("--repo-id", required=True, help="<org or user>/<name> on the Hub")
    parser.add_argument("--license", default=None, help="license of the captions (default: the pipeline card's)")
    parser.add_argument("--pretty-name", default=None)
    parser.add_argument("--clip-seconds", type=float, default=None, help="clip length (default: the pipeline card's, else 8)")  # fmt: skip
    parser.add_argument("--image-size", type=int, default=None, help="teacher input size (default: the pipeline card's, else 320)")  # fmt: skip
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus top_p, if the pipeline card does not say")
    parser.add_argument("--source-note", default=None, help="where the source videos come from and under which terms")
    parser.add_argument("--source-dataset", dest="source_datasets", action="append", default=None, help="Hub id of the source video dataset (repeatable)")  # fmt: skip
    parser.add_argument("--keep-video-path", action="store_true", help="keep the video_path column (machine-local paths)")  # fmt: skip


def run(args, log=print) -> int:
    from push_to_hub.upload import upload_unless_dry_run

    stage_dir = args.dry_run or tempfile.mkdtemp(prefix="frozencaptioner-dataset-")
    try:
        card = stage_dataset(
            args.data_dir,
            stage_dir,
            args.repo_id,
            license=args.license,
            pretty_name=args.pretty_name,
            clip_seconds=args.clip_seconds,
            image_size=args.image_size,
            top_p=args.top_p,
            source_note=args.source_note,
            source_datasets=args.source_datasets,
            keep_video_path=args.keep_video_path,
            log=log,
        )
        log(f"staged {args.data_dir} -> {stage_dir}")
        report = validate_staged_dataset(stage_dir, expect_rows=card.data.dataset_info["splits"][0]["num_examples"])
        log(f"load_dataset check passed: {json.dumps(report)}")
        return upload_unless_dry_run(
            stage_dir, args, "dataset", DATASET_ALLOW_PATTERNS, "Upload FrozenCaptioner pseudolabel captions", log=log
        )
    finally:
        if not args.dry_run:
            shutil.rmtree(stage_dir, ignore_errors=True)


__all__ = ["DATASET_ALLOW_PATTERNS", "REQUIRED_COLUMNS", "stage_dataset", "validate_staged_dataset"]
