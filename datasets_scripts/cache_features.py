"""Caption shards -> a feature cache: the frozen vision tower's outputs next to each caption, for `train/train.py`.

Reads training shards (`{"id", "frames": [T JPEGs], "caption", "source"}`, what `train.py` trains on: the output of
`build_video_clips`, `build_laion`, ...), decodes and preprocesses the frames exactly as training does
(`train.data.decode_frames` + `preprocess_clips`, with the model's processor, `--num_frames`, `--image_size`), runs the
frozen tower of the given model once per clip and writes `{"id", "caption", "source", "features": binary}`:

* separable cross-attention (the paper's): `get_pooled_video_features`, the `(frames + patches, D)` pooled
  time/space tokens (8 frames of TimeSformer-base at 224 px: 204 x 768, 313 KB in fp16);
* `--cross_attention full` (or a full-attention `--model_name_or_path`): the tower's whole `last_hidden_state`
  (1 + 1568 tokens for the same clip, 2.4 MB in fp16).

`--dtype fp16` (default) or `fp32`. Every shard's footer records the tower (config hash, sampled weights), its
preprocessing and the frame count (`train/feature_cache.py`); `train.py` detects the cache from its `features` column
and refuses one made by another tower, crop or frame count. Training from the cache fixes the crop: no augmentation.

Same output layout and resumability as the other builders (`training_rows.InputShardBuild`): the output of input shard
`S` is `data/S-NNNNN.parquet` (row groups of <= 64 rows / ~16 MiB, `ShardWriter`), rows that cannot be decoded are
logged to `errors/S.jsonl` and skipped, the marker `_state/done/S.json` is written last; a rerun skips done input
shards and redoes the others, never touching finished output. A rerun with another tower or settings into the same
`--output_dir` is refused (`feature_cache.json`). Work splits by input shard over `accelerate launch` processes (one
GPU each) and `--shard_id/--num_shards` jobs.

    python -m datasets_scripts.cache_features --input out/howto100m_blip_clips --output_dir out/howto100m_cache \
        --model_name_or_path out/run/model --dtype fp16
    # images (LAION): one frame per row
    python -m datasets_scripts.cache_features --input out/laion --output_dir out/laion_cache --num_frames 1 \
        --vision_model_name_or_path facebook/timesformer-base-finetuned-k400 --text_model_name_or_path facebook/opt-1.3b
"""

import argparse
import glob
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from datasets_scripts.io_utils import (
    check_unique_stems,
    launch_rank_world,
    owner_unit,
    work_unit,
    write_json_atomic,
)
from datasets_scripts.training_rows import InputShardBuild, build_by_input_shard, write_card


logger = logging.getLogger(__name__)
RECORD_FILE = "feature_cache.json"
INPUT_COLUMNS = ["id", "frames", "caption"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.cache_features",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", nargs="+", required=True,
                   help="training-shard folders (their data/*.parquet, else *.parquet) or parquet files / globs")  # fmt: skip
    p.add_argument("--output_dir", required=True)
    p.add_argument("--model_name_or_path", default=None, help="a FrozenCaptioner checkpoint: its tower and processor")
    p.add_argument("--vision_model_name_or_path", default=None, help="or a vision tower (with --text_model_...)")
    p.add_argument("--text_model_name_or_path", default=None, help="the text checkpoint (tokenizer, model build)")
    p.add_argument("--cross_attention", choices=["separable", "full"], default="separable",
                   help="with the towers: separable -> pooled tokens, full -> all tokens")  # fmt: skip
    p.add_argument("--num_frames", type=int, default=None, help="frames per clip (1 for images; default: processor's)")
    p.add_argument("--image_size", type=int, default=None, help="crop size, as train.py --image_size")
    p.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="stored feature dtype")
    p.add_argument("--tower_dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="dtype the tower runs in")
    p.add_argument("--device", default=None, help="default: this process's GPU (accelerate launch) if any, else cpu")
    p.add_argument("--batch_size", type=int, default=16, help="clips per tower forward")
    p.add_argument("--decode_threads", type=int, default=4, help="threads decoding the JPEG frames of a batch")
    p.add_argument("--shard_size", type=int, default=1000, help="rows per output parquet shard")
    p.add_argument("--shard_id", type=int, default=None, help="this job's index among --num_shards independent jobs")
    p.add_argument("--num_shards", type=int, default=None, help="number of independent jobs (e.g. SLURM array size)")
    p.add_argument("--license", default="other")
    args = p.parse_args(argv)
    if args.model_name_or_path is None and not (args.vision_model_name_or_path and args.text_model_name_or_path):
        p.error("give --model_name_or_path, or --vision_model_name_or_path and --text_model_name_or_path")
    return args


def input_files(inputs: list[str]) -> list[tuple[str, str]]:
    """`[(stem, path)]` of the input shards, sorted by path."""
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "data", "*.parquet"))) or sorted(
                glob.glob(os.path.join(item, "*.parquet"))
            )
        else:
            found = sorted(glob.glob(item)) or ([item] if os.path.exists(item) else [])
        if not found:
            raise SystemExit(f"no parquet shards in {item}")
        files += found
    files = sorted(set(files))
    return [(os.path.splitext(os.path.basename(f))[0], f) for f in files]


def feature_schema(record: dict):
    import pyarrow as pa

    from train.feature_cache import FEATURES, METADATA_KEY

    fields = [("id", pa.string()), ("caption", pa.string()), ("source", pa.string()), (FEATURES, pa.binary())]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)})


class TowerFeatures:
    """The frozen tower of `model` as the cache sees it: decoded clips -> one `features` blob per clip.

    Args:
        model (`FrozenCaptionerForConditionalGeneration`): its `vision_model` runs on `device` in `tower_dtype`.
        processor (`FrozenCaptionerProcessor`): preprocessing (as in training).
        num_frames (`int`): frames per clip. image_size (`int`, *optional*): crop override (`--image_size`).
        dtype (`str`): "fp16" / "fp32", the stored dtype.
    """

    def __init__(self, model, processor, num_frames: int, image_size=None, dtype="fp16", device="cpu",
                 tower_dtype=None, source=None):  # fmt: skip
        import torch

        from train.feature_cache import DTYPES, tokens_kind, tower_record

        self.model, self.processor = model, processor
        model.vision_model.eval()  # the tower only: a caller may be training the adapters (the benchmark)
        self.num_frames, self.image_size = int(num_frames), image_size
        self.device, self.tokens = torch.device(device), tokens_kind(model)
        self.storage = getattr(torch, DTYPES[dtype])
        self.record = {**tower_record(model, processor, self.num_frames), "tokens": self.tokens,
                       "dtype": DTYPES[dtype], "source": source}  # fmt: skip
        model.vision_model.to(self.device, tower_dtype)  # only the tower runs here (the LM stays where it is)
        self.record["tower_dtype"] = str(next(model.vision_model.parameters()).dtype).replace("torch.", "")
        self.record["shape"] = None
        black = np.zeros((self.num_frames, 256, 256, 3), dtype=np.uint8)  # the processor resizes and crops it
        self.record["shape"] = list(self.features([black]).shape[1:])  # the stored shape, known before any row

    def features(self, clips):
        """Decoded clips `[(T, H, W, 3) uint8]` -> the tower's output `(B, *shape)` in the stored dtype, on the CPU."""
        import torch

        from train.data import preprocess_clips

        pixel_values = preprocess_clips(self.processor, clips, self.image_size).to(self.device)  # (B, T, 3, H, W)
        with torch.no_grad():
            if self.tokens == "pooled":
                features = self.model.get_pooled_video_features(pixel_values)  # (B, t + s, D)
            else:  # TimeSformer: (B, 1 + s * t, D); frame-wise towers: (B, t, s, D)
                features = self.model.get_video_features(pixel_values, return_dict=True).last_hidden_state
        stored = features.to(self.storage).cpu().contiguous()
        if not torch.isfinite(stored).all() and torch.isfinite(features).all():
            raise RuntimeError(f"the tower's features overflow {self.storage} (max |x| {features.abs().max():.3g}): "
                               "cache them with --dtype fp32")  # fmt: skip
        features = stored
        if self.record["shape"] is not None and list(features.shape[1:]) != self.record["shape"]:
            raise RuntimeError(f"tower output {list(features.shape[1:])} != the recorded {self.record['shape']}")
        return features

    def __call__(self, clips) -> list[bytes]:
        """Decoded clips -> one little-endian blob of the recorded shape and dtype per clip."""
        array = self.features(clips).numpy()
        if sys.byteorder != "little":
            array = array.byteswap()
        return [row.tobytes() for row in array]


def load_tower(args) -> TowerFeatures:
    """The model and processor exactly as `train.py` would load them from the same flags."""
    import torch

    from train.train import load_model_and_processor

    load_args = argparse.Namespace(
        model_name_or_path=args.model_name_or_path, vision_model_name_or_path=args.vision_model_name_or_path,
        text_model_name_or_path=args.text_model_name_or_path, adapter_layers=None, gate_type="vector",
        gate_init=1.0, cross_attention=args.cross_attention, num_frames=None if args.num_frames == 1 else args.num_frames,
        image_size=args.image_size,
    )  # fmt: skip
    model, processor = load_model_and_processor(load_args)
    num_frames = args.num_frames or processor.num_frames
    device = args.device
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    source = {k: getattr(args, k) for k in ("model_name_or_path", "vision_model_name_or_path")}
    tower_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.tower_dtype]
    return TowerFeatures(model, processor, num_frames, args.image_size, args.dtype, device, tower_dtype, source)


def check_output_record(output_dir: str, record: dict) -> None:
    """A cache folder holds one tower's features: refuse to add to one made with another tower or settings."""
    path = os.path.join(output_dir, RECORD_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    keys = sorted(
        k for k in set(saved) | set(record) if k not in ("source", "shape") and saved.get(k) != record.get(k)
    )
    if keys:
        raise SystemExit(f"{output_dir} holds a feature cache made with other settings ({', '.join(keys)} differ; "
                         f"made from {saved.get('source')}): use a new --output_dir")  # fmt: skip


def main(argv=None, tower: TowerFeatures | None = None) -> dict:
    """Build the cache. `tower`: an already loaded `TowerFeatures` (the benchmark; default: from the flags).
    Returns this run's counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from train.data import CorruptSample, decode_frames

    args = parse_args(argv)
    shards = input_files(args.input)
    check_unique_stems([s for s, _ in shards], "input shards")
    tower = tower or load_tower(args)
    check_output_record(args.output_dir, tower.record)
    rank, world = launch_rank_world()
    unit, num_units = work_unit(args.shard_id, args.num_shards, rank, world)
    mine = [(s, f) for s, f in shards if owner_unit(s, num_units) == unit]
    counts = {"rows": 0, "corrupt_rows": 0, "short_frame_rows": 0}
    write_json_atomic(os.path.join(args.output_dir, RECORD_FILE), tower.record)  # every process: the same record
    build = InputShardBuild(args.output_dir, feature_schema(tower.record), args.shard_size,
                            f"u{unit:05d}of{num_units:05d}")  # fmt: skip
    todo = [(s, f) for s, f in mine if not build.is_done(s)]
    pool = ThreadPoolExecutor(max(1, args.decode_threads))

    def jobs_of(stem, path):
        """Batches of `--batch_size` rows, one row group read at a time (memory does not grow with the shard)."""
        try:
            handle = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:  # truncated or not parquet: logged, the other shards go on
            build.error(stem, path, f"unreadable parquet file: {err}"[:300], "read")
            logger.warning("skipping unreadable input shard %s: %s", path, err)
            return
        names = set(handle.schema_arrow.names)
        if not set(INPUT_COLUMNS) <= names:
            raise SystemExit(f"{path}: a feature cache is built from training shards with columns {INPUT_COLUMNS} "
                             f"(+ source), got {sorted(names)}")  # fmt: skip
        columns = INPUT_COLUMNS + (["source"] if "source" in names else [])
        for group in range(handle.num_row_groups):
            try:
                rows = handle.read_row_group(group, columns=columns).to_pylist()
            except (OSError, pa.ArrowException) as err:
                build.error(stem, path, f"unreadable row group {group}: {err}"[:300], "read")
                logger.warning("skipping row group %d of %s: %s", group, path, err)
                continue
            for i in range(0, len(rows), args.batch_size):
                yield path, rows[i : i + args.batch_size]

    def decode(row):
        if not isinstance(row["caption"], str) or not row["caption"].strip():
            raise CorruptSample("row has no caption")
        return decode_frames(row["frames"], tower.num_frames)

    def work(job):
        path, rows = job
        futures = [pool.submit(decode, row) for row in rows]
        good, clips, errors = [], [], []
        for row, future in zip(rows, futures):
            try:
                clips.append(future.result())
                good.append(row)
            except CorruptSample as err:
                errors.append((row["id"], str(err)))
        blobs = tower(clips) if clips else []
        out = [{"id": r["id"], "caption": r["caption"], "source": r.get("source"), "features": b}
               for r, b in zip(good, blobs)]  # fmt: skip
        short = sum(len(r["frames"]) < tower.num_frames for r in good)
        return path, out, errors, short

    def on_result(build, stem, result):
        path, out, errors, short = result
        for row_id, reason in errors:
            build.error(stem, path, reason, "decode", id=row_id)
            logger.warning("skipping row %r of %s: %s", row_id, path, reason)
        for row in out:
            build.add(stem, row)
        counts["rows"] += len(out)
        counts["corrupt_rows"] += len(errors)
        counts["short_frame_rows"] += short

    t0 = time.time()
    done = build_by_input_shard(build, todo, jobs_of, work, on_result, 0)  # the tower runs here, batch by batch
    pool.shutdown()
    if rank == 0:
        record = tower.record
        body = f"""# Feature cache

Made with `python -m datasets_scripts.cache_features` from `{", ".join(args.input)}`: each row is one training row's
`id`, `caption` and `source` with `features`, the frozen vision tower's {record["tokens"]} output for its
{record["num_frames"]} frame(s), raw little-endian {record["dtype"]} bytes of shape {record["shape"]}. The tower,
its preprocessing and the frame count are recorded in `{RECORD_FILE}` and in every shard's footer; `train/train.py`
trains on these shards directly (no frame decoding, no tower forward) and refuses a cache of another tower."""
        write_card(args.output_dir, "feature cache", feature_schema(record), body, ["train"], args.license,
                   paths={"train": "data/*.parquet"})  # fmt: skip
    dt = time.time() - t0
    print(
        f"[cache_features unit {unit}/{num_units}] {counts['rows']} rows cached from {done['input_shards']} input "
        f"shards, {counts['corrupt_rows']} corrupt rows skipped (errors/), {counts['short_frame_rows']} rows with "
        f"fewer than {tower.num_frames} frames (repeated), {len(mine) - len(todo)} input shards already done, "
        f"{counts['rows'] / max(dt, 1e-9):.1f} rows/s",
        file=sys.stderr,
    )
    return {**counts, **done}


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
