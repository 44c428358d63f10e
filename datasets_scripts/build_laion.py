"""LAION-style image-text pairs -> TRAINING rows with T = 1 frame (images are one-frame videos).

Input: an HF dataset streamed with `datasets.load_dataset(..., streaming=True)`: a hub name, a local dir of
parquet/json files, or img2dataset output (`--input_format parquet` dir with `url, caption, jpg` columns, or
`webdataset` tars with `jpg` + `txt`). Image from `--image_column` (image feature, bytes, or `{"bytes"}` dict), or
downloaded from `--url_column` with `--download` (timeout, failures recorded). English-only filter (on by default):
`langdetect` (seeded, so deterministic) top language must be `en` with probability >= `--min_en_prob`; captions
langdetect cannot classify (too short, digits only) are kept only if they are pure ASCII.

Multi-process: `accelerate launch -m datasets_scripts.build_laion ...` streams a disjoint part per process with
`datasets.distributed.split_dataset_by_node`; process r writes `data/train-r<RRRRR>-NNNNN.parquet`.

Rows: `{"id": "<rank>_<n>" or the dataset key, "frames": [1 JPEG, short side 256], "caption", "source": "laion"}`.

    python -m datasets_scripts.build_laion --input laion/relaion2B-en-research-safe --download --max_rows 500000 \
        --output_dir out/laion500k
"""

import argparse
import os
import sys
import time

from datasets_scripts.io_utils import ErrorLog, partial_state
from datasets_scripts.training_rows import ShardWriter, image_jpeg, train_schema, write_card
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
    p.add_argument("--shard_id", type=int, default=None, help="override the process rank (e.g. SLURM array jobs)")
    p.add_argument("--num_shards", type=int, default=None, help="override the number of processes")
    return p.parse_args(argv)


def _pick(columns, wanted, candidates):
    if wanted:
        return wanted
    for c in candidates:
        if c in columns:
            return c
    return None


def main(argv=None):
    args = parse_args(argv)
    import datasets
    from datasets.distributed import split_dataset_by_node
    from tqdm.auto import tqdm

    state = partial_state()
    if args.input_format:
        ds = datasets.load_dataset(args.input_format, data_dir=args.input, split=args.split, streaming=True)
    else:
        ds = datasets.load_dataset(args.input, split=args.split, streaming=True)
    rank = state.process_index if args.shard_id is None else args.shard_id
    world = state.num_processes if args.num_shards is None else args.num_shards
    ds = split_dataset_by_node(ds, rank=rank, world_size=world)
    cols = list(ds.features) if ds.features is not None else None
    errors = ErrorLog(os.path.join(args.output_dir, "errors.jsonl"))
    writer = ShardWriter(args.output_dir, "train", train_schema(), args.shard_size, prefix=f"r{rank:05d}-")
    counts = {"seen": 0, "written": 0, "non_english": 0, "bad_image": 0, "no_caption": 0}
    t0 = time.time()
    img_col = cap_col = url_col = None
    pbar = tqdm(desc=f"laion[{rank}/{world}]", unit="img", position=state.process_index)
    for n, row in enumerate(ds):
        if img_col is None and cap_col is None:
            cols = cols or list(row)
            img_col = _pick(cols, args.image_column, ["image", "jpg", "png", "webp"])
            cap_col = _pick(cols, args.caption_column, ["caption", "text", "txt", "TEXT"])
            url_col = _pick(cols, args.url_column, ["url", "URL"])
            if cap_col is None:
                raise SystemExit(f"no caption column among {cols}")
        counts["seen"] += 1
        caption = row.get(cap_col)
        key = str(row.get("key") or row.get("__key__") or f"{rank}_{n}")
        if not caption or not str(caption).strip():
            counts["no_caption"] += 1
            continue
        caption = " ".join(str(caption).split())
        if not args.no_english_filter and not is_english(caption, args.min_en_prob):
            counts["non_english"] += 1
            continue
        image = row.get(img_col) if img_col else None
        if isinstance(image, dict):
            image = image.get("bytes") or image.get("path")
        where = str(row.get(url_col) or key) if url_col else key
        try:
            if image is None and args.download and url_col and row.get(url_col):
                from datasets_scripts.io_utils import download

                tmp = None
                try:
                    tmp = download(row[url_col], timeout=args.download_timeout, suffix=".img")
                    jpg = image_jpeg(tmp, args.short_side)
                finally:
                    if tmp and os.path.exists(tmp):
                        os.remove(tmp)
            elif image is not None:
                jpg = image_jpeg(image, args.short_side)
            else:
                raise VideoDecodeError(where, "missing", "no image and no url/--download")
        except VideoDecodeError as e:
            errors.write(where, e.reason, "image", detail=e.detail[:200])
            counts["bad_image"] += 1
            continue
        except Exception as e:  # dead URL, HTTP error, ...
            errors.write(where, "download_failed", "image", detail=repr(e)[:200])
            counts["bad_image"] += 1
            continue
        writer.add({"id": key, "frames": [jpg], "caption": caption, "source": "laion"})
        counts["written"] += 1
        pbar.update(1)
        if args.max_rows is not None and counts["written"] >= args.max_rows:
            break
    pbar.close()
    writer.close()
    state.wait_for_everyone()
    if state.is_main_process:
        body = f"""# LAION-style image-text pairs (one-frame videos)

Made with `python -m datasets_scripts.build_laion` from `{args.input}`; English-only filter
{"off" if args.no_english_filter else f"on (langdetect, p(en) >= {args.min_en_prob})"}; images resized to short side
{args.short_side} and stored as one JPEG frame. Image-text pairs scraped from the web carry the licences of their
sources and the known problems of LAION (noisy, biased, possibly unsafe content): filter before use."""
        write_card(args.output_dir, "LAION-style image-text", train_schema(), body, ["train"], "other")
    print(f"[build_laion shard {rank}/{world}] {counts}, {time.time() - t0:.1f}s", file=sys.stderr)
    return counts


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
