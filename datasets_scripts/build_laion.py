"""LAION-style image-text pairs -> TRAINING rows with T = 1 frame (images are one-frame videos).

Input: an HF dataset streamed with `datasets.load_dataset(..., streaming=True)`: a hub name, a local dir of
parquet/json files, or img2dataset output (`--input_format parquet` dir with `url, caption, jpg` columns, or
`webdataset` tars with `jpg` + `txt`). Image from `--image_column` (image feature, bytes, or `{"bytes"}` dict), or
downloaded from `--url_column` with `--download` (timeout, failures recorded). English-only filter (on by default):
`langdetect` (seeded, so deterministic) top language must be `en` with probability >= `--min_en_prob`; captions
langdetect cannot classify (too short, digits only) are kept only if they are pure ASCII.

Streaming and resumable (`training_rows.InputShardBuild`): the input's data files (parquet files, webdataset tars,
...; resolved with `datasets.load_dataset_builder`) are the input shards, each streamed on its own. Data file
`S.<ext>` is owned by one work unit (`io_utils.owner_unit`: stable hash of `S` over `--num_shards` jobs x
`accelerate launch` processes); its output is `data/S-NNNNN.parquet`, its error records `errors/S.jsonl`, its done
marker `_state/done/S.json` (written last). Filtering, decoding and resizing run in a bounded, unordered process
pool (`--num_workers`). A rerun skips done files and redoes the others; no process waits for another.

Rows: `{"id": the dataset key or "<S>_<n>" (row n of file S), "frames": [1 JPEG, short side 256], "caption",
"source": "laion"}`.

    python -m datasets_scripts.build_laion --input laion/relaion2B-en-research-safe --download --max_rows 500000 \
        --output_dir out/laion500k
"""

import argparse
import os
import sys
import time

from datasets_scripts.io_utils import check_unique_stems, launch_rank_world, owner_unit, work_unit
from datasets_scripts.training_rows import (
    InputShardBuild,
    build_by_input_shard,
    image_jpeg,
    train_schema,
    write_card,
)
from datasets_scripts.video_io import VideoDecodeError


def is_english(text: str, min_prob: float = 0.7) -> bool:
    """langdetect-based English filter (deterministic: `DetectorFactory.seed = 0`)."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    text = " ".join(str(text).split())
    if not text:
        return False
    try:
        langs = detect_langs(text)
    except LangDetectException:
        return text.isascii()
    return bool(langs) and langs[0].lang == "en" and langs[0].prob >= min_prob


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.build_laion",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="HF dataset name, or local dir (parquet / img2dataset output)")
    p.add_argument("--input_format", default=None, help="datasets builder for a local dir: parquet, webdataset, json")
    p.add_argument("--split", default="train")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--image_column", default=None, help="default: first of image, jpg, png, webp present")
    p.add_argument("--caption_column", default=None, help="default: first of caption, text, txt, TEXT present")
    p.add_argument("--url_column", default=None, help="default: url or URL")
    p.add_argument("--download", action="store_true", help="download images from the url column")
    p.add_argument("--download_timeout", type=float, default=10.0)
    p.add_argument("--no_english_filter", action="store_true")
    p.add_argument("--min_en_prob", type=float, default=0.7)
    p.add_argument("--short_side", type=int, default=256)
    p.add_argument("--shard_size", type=int, default=5000)
    p.add_argument("--max_rows", type=int, default=None, help="stop after this many rows written (per process)")
    p.add_argument("--num_workers", type=int, default=2, help="image processes (0 = in this process)")
    p.add_argument("--max_in_flight", type=int, default=None, help="rows submitted at once (default 64 x workers)")
    p.add_argument("--shard_id", type=int, default=None, help="this job's index among --num_shards independent jobs")
    p.add_argument("--num_shards", type=int, default=None, help="number of independent jobs (e.g. SLURM array size)")
    return p.parse_args(argv)


def _pick(columns, wanted, candidates):
    if wanted:
        return wanted
    for c in candidates:
        if c in columns:
            return c
    return None


def data_files(args) -> tuple[str, list[str]]:
    """`(builder name, [data file])` of the input's split, via `datasets.load_dataset_builder`."""
    import datasets

    if args.input_format:
        builder = datasets.load_dataset_builder(args.input_format, data_dir=args.input)
    else:
        builder = datasets.load_dataset_builder(args.input)
    files = (builder.config.data_files or {}).get(args.split)
    if not files:
        raise SystemExit(f"no data files for split {args.split!r} in {args.input}")
    return builder.name, sorted(str(f) for f in files)


def file_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path.split("?")[0]))[0]


def _process_row(job):
    """-> (outcome, key, caption, jpeg_or_detail, where); outcome in written / non_english / bad_image."""
    key, caption, image, url, where, args = job
    if not args["no_english_filter"] and not is_english(caption, args["min_en_prob"]):
        return "non_english", key, caption, None, where
    try:
        if image is None and args["download"] and url:
            from datasets_scripts.io_utils import download

            tmp = None
            try:
                tmp = download(url, timeout=args["download_timeout"], suffix=".img")
                jpg = image_jpeg(tmp, args["short_side"])
            finally:
                if tmp and os.path.exists(tmp):
                    os.remove(tmp)
        elif image is not None:
            jpg = image_jpeg(image, args["short_side"])
        else:
            raise VideoDecodeError(where, "missing", "no image and no url/--download")
    except VideoDecodeError as e:
        return "bad_image", key, caption, (e.reason, e.detail[:200]), where
    except Exception as e:  # dead URL, HTTP error, ...
        return "bad_image", key, caption, ("download_failed", repr(e)[:200]), where
    return "written", key, caption, jpg, where


def main(argv=None):
    args = parse_args(argv)
    import datasets
    from tqdm.auto import tqdm

    rank, world = launch_rank_world()
    unit, num_units = work_unit(args.shard_id, args.num_shards, rank, world)
    builder_name, files = data_files(args)
    check_unique_stems([file_stem(f) for f in files], "input data files")
    build = InputShardBuild(args.output_dir, train_schema(), args.shard_size, f"u{unit:05d}of{num_units:05d}")
    mine = [f for f in files if owner_unit(file_stem(f), num_units) == unit]
    todo = [(file_stem(f), f) for f in mine if not build.is_done(file_stem(f))]
    counts = {"seen": 0, "written": 0, "non_english": 0, "bad_image": 0, "no_caption": 0}
    options = {k: getattr(args, k) for k in ("no_english_filter", "min_en_prob", "download", "download_timeout",
                                              "short_side")}  # fmt: skip
    t0 = time.time()
    pbar = tqdm(desc=f"laion[{unit}/{num_units}]", unit="img")
    stop = {"now": False}

    def jobs_of(stem, path):
        ds = datasets.load_dataset(builder_name, data_files=[path], split="train", streaming=True)
        img_col = cap_col = url_col = None
        for n, row in enumerate(ds):
            if cap_col is None:
                cols = list(ds.features) if ds.features is not None else list(row)
                img_col = _pick(cols, args.image_column, ["image", "jpg", "png", "webp"])
                cap_col = _pick(cols, args.caption_column, ["caption", "text", "txt", "TEXT"])
                url_col = _pick(cols, args.url_column, ["url", "URL"])
                if cap_col is None:
                    raise SystemExit(f"{path}: no caption column among {cols}")
            counts["seen"] += 1
            caption = row.get(cap_col)
            key = str(row.get("key") or row.get("__key__") or f"{stem}_{n}")
            if not caption or not str(caption).strip():
                counts["no_caption"] += 1
                continue
            image = row.get(img_col) if img_col else None
            if isinstance(image, dict):
                image = image.get("bytes") or image.get("path")
            url = row.get(url_col) if url_col else None
            yield key, " ".join(str(caption).split()), image, url, str(url or key), options

    def on_result(build, stem, result):
        outcome, key, caption, payload, where = result
        if stop["now"]:
            return
        counts[outcome] += 1
        if outcome == "bad_image":
            build.error(stem, where, payload[0], "image", detail=payload[1])
        elif outcome == "written":
            build.add(stem, {"id": key, "frames": [payload], "caption": caption, "source": "laion"})
            pbar.update(1)
            if args.max_rows is not None and counts["written"] >= args.max_rows:
                stop["now"] = True  # the current file gets no done marker: a later run redoes it

    in_flight = args.max_in_flight or 64 * max(1, args.num_workers)
    build_by_input_shard(
        build, todo, jobs_of, _process_row, on_result, args.num_workers, in_flight, stop=lambda: stop["now"]
    )
    pbar.close()
    body = f"""# LAION-style image-text pairs (one-frame videos)

Made with `python -m datasets_scripts.build_laion` from `{args.input}`; English-only filter
{"off" if args.no_english_filter else f"on (langdetect, p(en) >= {args.min_en_prob})"}; images resized to short side
{args.short_side} and stored as one JPEG frame. Image-text pairs scraped from the web carry the licences of their
sources and the known problems of LAION (noisy, biased, possibly unsafe content): filter before use."""
    write_card(args.output_dir, "LAION-style image-text", train_schema(), body, ["train"], "other",
               paths={"train": "data/*.parquet"})  # fmt: skip
    print(f"[build_laion unit {unit}/{num_units}] {counts}, {time.time() - t0:.1f}s", file=sys.stderr)
    return counts


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
