"""Row schemas and a shard writer shared by the training/eval dataset builders.

TRAINING rows (consumed by `train/`): `{"id": string, "frames": list<binary>, "caption": string, "source": string}`
EVAL rows (MSR-VTT / MSVD val+test): `{"id": string, "frames": list<binary>, "references": list<string>}`

`frames` holds T JPEG-encoded RGB frames (T = 1 for images), sampled uniformly *by timestamp* in the clip
(`uniform_timestamps`: centers of T equal sub-intervals) and resized so the short side is `short_side` px (default
256). We store sampled JPEG frames rather than re-encoded video bytes: training then needs no video decoder, and
the shards are small (see `benchmarks/bench_decode.py --sizes` for the measured trade-off).
"""

import glob
import os

from datasets_scripts.io_utils import dataset_card, write_parquet_atomic, write_text_atomic
from datasets_scripts.video_io import encode_jpeg, read_frames_at, read_image, resize_frame, uniform_timestamps


def train_schema():
    import pyarrow as pa

    return pa.schema(
        [("id", pa.string()), ("frames", pa.list_(pa.binary())), ("caption", pa.string()), ("source", pa.string())]
    )


def eval_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("frames", pa.list_(pa.binary())), ("references", pa.list_(pa.string()))])


def sample_clips_jpeg(
    path: str,
    spans: list[tuple[float, float]],
    num_frames: int = 8,
    short_side: int = 256,
    backend: str = "auto",
    quality: int = 90,
) -> list[list[bytes]]:
    """For each `(start, end)` span: `num_frames` JPEG frames at `uniform_timestamps(start, end, num_frames)`.
    One seeking decode call per video. Raises `VideoDecodeError`."""
    stamps = [t for s, e in spans for t in uniform_timestamps(s, e, num_frames)]
    frames = read_frames_at(path, stamps, backend=backend)
    jpegs = [encode_jpeg(resize_frame(f, short_side), quality) for f in frames]
    return [jpegs[i * num_frames : (i + 1) * num_frames] for i in range(len(spans))]


def image_jpeg(image, short_side: int = 256, quality: int = 90) -> bytes:
    """Image (path, bytes or PIL) -> resized JPEG bytes."""
    return encode_jpeg(resize_frame(read_image(image), short_side), quality)


class ShardWriter:
    """Buffer rows and write `data/<split>-<prefix>NNNNN.parquet` shards atomically."""

    def __init__(self, out_dir: str, split: str, schema, shard_size: int = 1000, prefix: str = "", clear: bool = True):
        self.out_dir, self.split, self.schema, self.shard_size, self.prefix = (
            out_dir,
            split,
            schema,
            shard_size,
            prefix,
        )
        self.data_dir = os.path.join(out_dir, "data")
        self.tmp_dir = os.path.join(out_dir, "tmp")
        os.makedirs(self.data_dir, exist_ok=True)
        if clear:  # builders are not resumable: start the split from scratch
            for p in glob.glob(os.path.join(self.data_dir, f"{split}-{prefix}*.parquet")):
                os.remove(p)
        self.rows: list[dict] = []
        self.count = 0
        self.num_rows = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        name = f"{self.split}-{self.prefix}{self.count:05d}.parquet"
        write_parquet_atomic(table, os.path.join(self.data_dir, name), self.tmp_dir)
        self.count += 1
        self.num_rows += len(self.rows)
        self.rows = []

    def close(self) -> int:
        self.flush()
        if os.path.isdir(self.tmp_dir) and not os.listdir(self.tmp_dir):
            os.rmdir(self.tmp_dir)
        return self.num_rows


def write_card(
    out_dir: str,
    pretty_name: str,
    schema,
    body: str,
    splits: list[str],
    license: str = "other",
    schemas: dict | None = None,
) -> None:
    """Dataset card with one parquet glob per split. With several schemas (train vs eval rows) the splits must be
    separate configs; we then write one config per split name."""
    if schemas:
        # one config per split (features may differ: train vs eval rows): `load_dataset(dir, split_name, split=split_name)`
        from datasets_scripts.io_utils import yaml_features

        configs = "\n".join(
            f"- config_name: {s}\n  data_files:\n  - split: {s}\n    path: data/{s}-*.parquet" for s in splits
        )
        infos = "\n".join(
            f"- config_name: {s}\n  features:\n"
            + "\n".join("  " + line for line in yaml_features(schemas[s]).splitlines())
            for s in splits
        )
        text = (
            f"---\npretty_name: {pretty_name}\nlicense: {license}\nconfigs:\n{configs}\ndataset_info:\n{infos}\n---\n\n"
            + body.strip()
            + "\n"
        )
    else:
        text = dataset_card(
            pretty_name, schema, body, license=license, splits={s: f"data/{s}-*.parquet" for s in splits}
        )
    write_text_atomic(os.path.join(out_dir, "README.md"), text)
