"""Row schemas and a shard writer shared by the training/eval dataset builders.

TRAINING rows (consumed by `train/`): `{"id": string, "frames": list<binary>, "caption": string, "source": string}`
EVAL rows (MSR-VTT / MSVD val+test): `{"id": string, "frames": list<binary>, "references": list<string>}`

`frames` holds T JPEG-encoded RGB frames (T = 1 for images), sampled uniformly *by timestamp* in the clip
(`uniform_timestamps`: centers of T equal sub-intervals) and resized so the short side is `short_side` px (default
256). We store sampled JPEG frames rather than re-encoded video bytes: training then needs no video decoder, and
the shards are small (see `benchmarks/bench_decode.py --sizes` for the measured trade-off).

**Row groups** (`ROW_GROUP_ROWS`, `ROW_GROUP_BYTES`): every shard is written in row groups of at most 64 rows and at
most ~16 MiB (whichever comes first; a single larger row gets a group of its own). Training assigns (file, row
group) units to (rank, DataLoader worker) pairs, so small groups let 64 ranks x 8 workers share even a few shards
evenly: a 1,000-row shard of 8-frame clips (69-241 KiB per row) has 16 groups of 4-15 MiB; images (~20 KiB per row)
give ~1.3 MiB groups, still one read each.

**Resumable builders** (`InputShardBuild`, `build_by_input_shard`): builders work input shard by input shard. The
output of input shard `S` is `data/S-NNNNN.parquet` (each published atomically, never overwriting), its error
records go to `errors/S.jsonl`, and the marker `_state/done/S.json` is written last. A rerun skips the input shards
with a marker and redoes the others from scratch (their partial outputs and error records are removed first), so
after a `kill -9` at any point every row ends up in the output exactly once and no finished output is ever deleted.
Input shards are owned by one work unit each (`io_utils.owner_unit`: stable hash of the stem over
`--num_shards` jobs x `accelerate launch` processes), so units never touch each other's files.
"""

import functools
import glob
import itertools
import json
import os
import re
import shutil

from datasets_scripts.io_utils import (
    ErrorLog,
    dataset_card,
    imap_unordered,
    publish_file,
    write_json_atomic,
    write_text_atomic,
    writer_tag,
)
from datasets_scripts.video_io import encode_jpeg, read_frames_at, read_image, resize_frame, uniform_timestamps


ROW_GROUP_ROWS = 64  # rows per parquet row group, at most
ROW_GROUP_BYTES = 16 << 20  # bytes of cell data per row group, about (a group closes once it reaches this)
_WRITER_IDS = itertools.count()


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


def _cell_bytes(value) -> int:
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_cell_bytes(v) for v in value)
    return 8


class ShardWriter:
    """Write rows to parquet shards in `<out_dir>/data/`, streamed one row group at a time into a temp file; a shard
    is published (fsync, atomic rename that never overwrites) once it holds `shard_size` rows, and on `close()`.

    Args:
        out_dir (`str`): output folder.
        split (`str`): shard names are `<split>-<prefix>NNNNN.parquet`, unless `stem` is given.
        schema (`pyarrow.Schema`): row schema.
        shard_size (`int`, *optional*, defaults to 1000): rows per shard.
        prefix (`str`, *optional*): see `split`.
        clear (`bool`, *optional*, defaults to `True`): first delete this writer's existing shards (the name pattern
            above), so a rerun starts this split (or this input shard's output) from scratch.
        stem (`str`, *optional*): shard names are `<stem>-NNNNN.parquet` (resumable builders: `stem` = input shard).
        tmp_tag (`str`, *optional*): temp files go to `<out_dir>/tmp/<tmp_tag>/` (default `<host>-<pid>-<n>`, unique
            per writer); one folder per writer, removed by `close()`. The shared `tmp/` is never removed: another
            process (rank) may be creating its own folder in it at that moment.
        row_group_rows, row_group_bytes (`int`, *optional*): row-group bounds (`ROW_GROUP_ROWS`, `ROW_GROUP_BYTES`).
    """

    def __init__(
        self,
        out_dir: str,
        split: str,
        schema,
        shard_size: int = 1000,
        prefix: str = "",
        clear: bool = True,
        stem: str | None = None,
        tmp_tag: str | None = None,
        row_group_rows: int = ROW_GROUP_ROWS,
        row_group_bytes: int = ROW_GROUP_BYTES,
    ):
        self.out_dir, self.split, self.schema, self.shard_size = out_dir, split, schema, max(1, shard_size)
        self.row_group_rows, self.row_group_bytes = max(1, row_group_rows), row_group_bytes
        self.base = stem if stem is not None else f"{split}-{prefix}"
        self.sep = "-" if stem is not None else ""
        self.data_dir = os.path.join(out_dir, "data")
        self.tmp_dir = os.path.join(out_dir, "tmp", tmp_tag or f"{writer_tag()}-{next(_WRITER_IDS)}")
        os.makedirs(self.data_dir, exist_ok=True)
        if clear:
            for p in self.existing_shards():
                os.remove(p)
        self.group: list[dict] = []
        self.group_bytes = 0
        self.in_shard = 0  # rows added to the shard being written (written groups + the open group)
        self.writer = self.tmp_path = None
        self.count = 0  # shards published
        self.num_rows = 0  # rows in published shards
        self.published: list[str] = []

    def existing_shards(self) -> list[str]:
        pattern = re.compile(re.escape(self.base + self.sep) + r"\d{5}\.parquet$")
        return sorted(
            p for p in glob.glob(os.path.join(self.data_dir, "*.parquet")) if pattern.match(os.path.basename(p))
        )

    def shard_name(self, n: int) -> str:
        return f"{self.base}{self.sep}{n:05d}.parquet"

    def add(self, row: dict) -> None:
        self.group.append(row)
        self.group_bytes += sum(_cell_bytes(v) for v in row.values())
        self.in_shard += 1
        if len(self.group) >= self.row_group_rows or self.group_bytes >= self.row_group_bytes:
            self._write_group()
        if self.in_shard >= self.shard_size:
            self.flush()

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.group:
            return
        table = pa.Table.from_pylist(self.group, schema=self.schema)
        if self.writer is None:
            os.makedirs(self.tmp_dir, exist_ok=True)
            self.tmp_path = os.path.join(self.tmp_dir, self.shard_name(self.count) + ".tmp")
            self.writer = pq.ParquetWriter(self.tmp_path, self.schema, compression="zstd")
        self.writer.write_table(table, row_group_size=len(self.group))
        self.group, self.group_bytes = [], 0

    def flush(self) -> None:
        """Publish the shard being written (no-op when it is empty)."""
        self._write_group()
        if self.writer is None:
            return
        self.writer.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        name = self.shard_name(self.count)
        try:
            publish_file(self.tmp_path, os.path.join(self.data_dir, name), overwrite=False)
        except FileExistsError:
            raise RuntimeError(
                f"{name} already exists in {self.data_dir}: another process writes the same shard names "
                "(two runs of the same work at once?)"
            ) from None
        self.published.append(name)
        self.writer = self.tmp_path = None
        self.count += 1
        self.num_rows += self.in_shard
        self.in_shard = 0

    def close(self) -> int:
        """Publish what is left, remove this writer's temp folder; returns the number of rows written."""
        self.flush()
        try:
            os.rmdir(self.tmp_dir)
        except OSError:
            pass
        return self.num_rows


# ----------------------------------------------------------------------------------------------------------------
# resumable builders: one output per input shard, a done marker last


class InputShardBuild:
    """Output bookkeeping of a resumable builder (see the module docstring): done markers, per-input-shard writers
    and error logs.

    Args:
        out_dir (`str`): output folder.
        schema (`pyarrow.Schema`): row schema.
        shard_size (`int`): rows per output shard.
        unit_tag (`str`): this process's work unit (names its temp folder, stable across reruns so a rerun cleans
            what a killed run left there).
    """

    def __init__(self, out_dir: str, schema, shard_size: int, unit_tag: str):
        self.out_dir, self.schema, self.shard_size = out_dir, schema, shard_size
        self.done_dir = os.path.join(out_dir, "_state", "done")
        self.tmp_tag = unit_tag
        shutil.rmtree(os.path.join(out_dir, "tmp", unit_tag), ignore_errors=True)  # a killed run's temp files
        self.writers: dict[str, ShardWriter] = {}
        self.error_logs: dict[str, ErrorLog] = {}
        self.errors: dict[str, int] = {}

    def marker(self, stem: str) -> str:
        return os.path.join(self.done_dir, f"{stem}.json")

    def is_done(self, stem: str) -> bool:
        return os.path.exists(self.marker(stem))

    def start(self, stem: str) -> None:
        """Begin (or redo from scratch) input shard `stem`: removes its partial outputs and error records."""
        error_file = os.path.join(self.out_dir, "errors", f"{stem}.jsonl")
        if os.path.exists(error_file):
            os.remove(error_file)
        self.writers[stem] = ShardWriter(
            self.out_dir, "train", self.schema, self.shard_size, stem=stem, tmp_tag=os.path.join(self.tmp_tag, stem)
        )
        self.errors[stem] = 0

    def add(self, stem: str, row: dict) -> None:
        self.writers[stem].add(row)

    def error(self, stem: str, path: str, reason: str, stage: str, **extra) -> None:
        if stem not in self.error_logs:
            self.error_logs[stem] = ErrorLog(os.path.join(self.out_dir, "errors", f"{stem}.jsonl"))
        self.error_logs[stem].write(path, reason, stage, **extra)
        self.errors[stem] += 1

    def finish(self, stem: str, **stats) -> int:
        """Publish the rest of `stem`'s output, then write its done marker. Returns its row count."""
        writer = self.writers.pop(stem)
        rows = writer.close()
        self.error_logs.pop(stem, None)
        write_json_atomic(
            self.marker(stem), {"rows": rows, "shards": writer.published, "errors": self.errors.pop(stem), **stats}
        )
        return rows

    def abort(self, stem: str) -> int:
        """Publish what `stem` has (a run stopped early, e.g. `--max_rows`) but write no done marker: a later run
        redoes the whole input shard. Returns the rows published."""
        rows = self.writers.pop(stem).close()
        self.error_logs.pop(stem, None)
        self.errors.pop(stem, None)
        return rows

    def close(self) -> None:
        shutil.rmtree(os.path.join(self.out_dir, "tmp", self.tmp_tag), ignore_errors=True)

    def totals(self) -> dict:
        """Rows and errors over every done marker in the output folder (all units, all runs)."""
        rows = errors = shards = 0
        for p in glob.glob(os.path.join(self.done_dir, "*.json")):
            with open(p, encoding="utf-8") as f:
                m = json.load(f)
            rows, errors, shards = rows + m.get("rows", 0), errors + m.get("errors", 0), shards + 1
        return {"rows": rows, "errors": errors, "input_shards_done": shards}


def _tagged(work, item):
    stem, job = item
    return stem, work(job)


def build_by_input_shard(build: InputShardBuild, shards, jobs_of, work, on_result, num_workers: int,
                         max_in_flight: int | None = None, on_shard_done=None, stop=None) -> dict:  # fmt: skip
    """Drive a resumable build: for each `(stem, source)` of the lazy iterable `shards` (this unit's input shards
    without a done marker), `jobs_of(stem, source)` yields jobs, `work(job)` runs in a bounded unordered process
    pool (`imap_unordered`) and `on_result(build, stem, result)` writes rows / errors. When every job of an input
    shard has come back, the shard is finished (`build.finish`, done marker last) and `on_shard_done(stem, rows)`
    is called. Once `stop()` is true no more jobs are submitted and the input shard being read is published
    without a marker (`build.abort`). Returns `{"input_shards": n, "rows": n}` for this run."""
    outstanding: dict[str, int] = {}
    read_all: set[str] = set()
    cut: set[str] = set()
    order: list[str] = []
    totals = {"input_shards": 0, "rows": 0}

    def items():
        for stem, source in shards:
            if stop is not None and stop():
                return
            build.start(stem)
            outstanding[stem] = 0
            order.append(stem)
            for job in jobs_of(stem, source):
                if stop is not None and stop():
                    cut.add(stem)
                    read_all.add(stem)
                    return
                outstanding[stem] += 1
                yield stem, job
            read_all.add(stem)

    def finish_ready():
        for stem in [s for s in order if s in read_all and outstanding[s] == 0]:
            order.remove(stem)
            if stem in cut or (stop is not None and stop()):  # stopped early: results may have been dropped
                build.abort(stem)
                continue
            rows = build.finish(stem)
            totals["input_shards"] += 1
            totals["rows"] += rows
            if on_shard_done is not None:
                on_shard_done(stem, rows)

    for stem, result in imap_unordered(functools.partial(_tagged, work), items(), num_workers, max_in_flight):
        on_result(build, stem, result)
        outstanding[stem] -= 1
        finish_ready()
    finish_ready()
    build.close()
    return totals


def write_card(
    out_dir: str,
    pretty_name: str,
    schema,
    body: str,
    splits: list[str],
    license: str = "other",
    schemas: dict | None = None,
    paths: dict | None = None,
) -> None:
    """Dataset card with one parquet glob per split (`data/<split>-*.parquet`, or `paths[split]`). With several
    schemas (train vs eval rows) the splits must be separate configs; we then write one config per split name."""
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
        globs = {s: (paths or {}).get(s, f"data/{s}-*.parquet") for s in splits}
        text = dataset_card(pretty_name, schema, body, license=license, splits=globs)
    write_text_atomic(os.path.join(out_dir, "README.md"), text)
