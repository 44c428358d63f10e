"""Streaming training data: the per-rank modality draw, the (rank, worker) split of the shards, length-bucketed
caption batches, collate, and an O(1) data position for resuming.

Training shards are parquet files with rows `{"id": str, "frames": list<binary> (T JPEG frames; T=1 for an image),
"caption": str, "source": str}` (written by `datasets_scripts/build_*.py`). Files in the evaluation schema
`{"id": str, "frames": list<binary>, "references": list<str>}` (e.g. `caption_benchmarks.py --train_layout per_video`)
are trained on as one row per reference.

Pieces, top to bottom:

* `ModalitySampler`: every process draws "image" (p=0.95) or "video" (p=0.05) from its own generator seeded with
  `seed + rank` (the paper; "synchronized" seeds every rank with `seed`, the unstable variant it compares with), or
  repeats a fixed `sequence` (rehearsals and benchmarks, not the paper).
* `ShardIndex`: the footers of a stream's files (row groups and their row counts, sizes): everything the split is
  planned from. No row is read to plan; the trainer reads the footers once on the main process and broadcasts them.
* `assign_part`: the split. Each epoch the row groups are put in an order drawn from `(seed, epoch)` (the same on
  every rank), their rows are concatenated, and the `ranks x workers` parts get contiguous ranges of
  `floor/ceil(rows / parts)` rows, cut inside a row group where needed. So every row is read once per epoch, by one
  part, for any shard count and row-group layout (no divisibility requirement); a part decodes at most one row group
  it does not yield (the prefix of a row group it starts inside).
* `CaptionBatchStream`: a torch `IterableDataset` of whole batches for one (rank, DataLoader worker). Its part's rows
  are cut into blocks of `shuffle_buffer` rows (rounded up to a whole bucketing window) and each block is permuted
  (a block shuffle *(ours)*, so the position is restorable); the permuted rows are cut into windows of
  `bucket_batches x batch_size` rows, sorted by caption length (length bucketing, less padding), cut into batches,
  and the batch order of each window is shuffled. Every permutation is drawn from a generator seeded by its
  (part, epoch, block / window) index, so a resumed stream starts at the block of its next batch: it reads at most
  one block + one row group before its first batch, however far the run got. Frames are decoded only in `collate`.
* `MixedModalityLoader`: one DataLoader per modality; serves the batch the sampler asks for, keeps the data position
  (batches consumed per stream), corrupt-row counts and frame-count warnings, and restores them on resume.
"""

import hashlib
import io
import json
import logging
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from modeling_frozencaptioner import sample_frame_indices


logger = logging.getLogger(__name__)

IMAGE, VIDEO = "image", "video"
MODALITIES = (IMAGE, VIDEO)
CAPTION, REFERENCES = "caption", "references"  # the two text columns a stream can train on


class CorruptSample(ValueError):
    """A row whose frames cannot be decoded (bad JPEG bytes, no frames, frames of different sizes) or has no caption."""


# ----------------------------------------------------------------------------------------------- modality draw
class ModalitySampler:
    """Draws the modality of every step (or micro-batch, see `train.py --modality_draw`) on this process.

    Args:
        p_image (`float`): probability of an image batch (the paper: 0.95; 1.0 = images only, 0.0 = videos only).
        seed (`int`): base seed.
        rank (`int`): process index; the generator is seeded with `seed + rank`, so ranks draw independently and each
            rank's sequence is reproducible.
        synchronized (`bool`): seed every rank with `seed` (all processes draw the same modality each step).
        sequence (`list[str]`, *optional*): repeat this sequence of modalities instead of drawing (a fixed order for
            rehearsals and benchmarks; not the paper).
    """

    def __init__(
        self,
        p_image: float = 0.95,
        seed: int = 0,
        rank: int = 0,
        synchronized: bool = False,
        sequence: list[str] | None = None,
    ):
        if not 0.0 <= p_image <= 1.0:
            raise ValueError(f"p_image must be in [0, 1], got {p_image}")
        if sequence is not None and (not sequence or set(sequence) - set(MODALITIES)):
            raise ValueError(f"a modality sequence is a non-empty list of {MODALITIES}, got {sequence}")
        self.p_image = float(p_image)
        self.seed = int(seed) + (0 if synchronized else int(rank))
        self.synchronized = synchronized
        self.sequence = list(sequence) if sequence else None
        self.generator = np.random.Generator(np.random.PCG64(self.seed))
        self.num_draws = 0

    def draw(self) -> str:
        self.num_draws += 1
        if self.sequence:
            return self.sequence[(self.num_draws - 1) % len(self.sequence)]
        return IMAGE if self.generator.random() < self.p_image else VIDEO

    def state_dict(self) -> dict:
        return {"seed": self.seed, "num_draws": self.num_draws, "bit_generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict):
        if state["seed"] != self.seed:
            raise ValueError(f"modality sampler seed {state['seed']} in the checkpoint != {self.seed} of this run")
        self.generator.bit_generator.state = state["bit_generator"]
        self.num_draws = state["num_draws"]


# ----------------------------------------------------------------------------------------------- decoding
def decode_frames(frames: list, num_frames: int) -> np.ndarray:
    """Decode `num_frames` frames, spread uniformly over the row's JPEG frames, into a `(num_frames, H, W, 3)` uint8
    array. Only the sampled frames are decoded (a row with fewer frames repeats some). Raises `CorruptSample` on any
    bad input."""
    if not frames:
        raise CorruptSample("row has no frames")
    decoded = []
    for index in sample_frame_indices(len(frames), num_frames):
        data = frames[int(index)]
        if not data:
            raise CorruptSample(f"frame {int(index)} is empty")
        try:
            with Image.open(io.BytesIO(data)) as image:
                decoded.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise CorruptSample(f"frame {int(index)}: {err}") from err
    if len({frame.shape for frame in decoded}) != 1:
        raise CorruptSample(f"frames of different sizes: {sorted({frame.shape for frame in decoded})}")
    return np.stack(decoded)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes (used by the tests, the demo and the benchmark to write shards)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- shard index
def _read_footer(path: str) -> dict:
    """One file's footer: its text column, the training rows and parquet rows of every row group, the bytes of the
    columns the stream reads. Reads only the footer (`pq.read_metadata`), never a row."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError on a truncated or non-parquet file
        raise ValueError(f"{path}: not a readable parquet file ({err})") from err
    names = set(meta.schema.to_arrow_schema().names)
    text = CAPTION if CAPTION in names else REFERENCES if REFERENCES in names else None
    if text is None or not {"id", "frames"} <= names:
        raise ValueError(
            f"{path}: expected columns id, frames and caption (training rows) or references (eval rows), "
            f"got {sorted(names)}"
        )
    rows, parquet_rows, nbytes = [], [], 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        parquet_rows.append(group.num_rows)
        expanded = group.num_rows
        for j in range(group.num_columns):
            column = group.column(j)
            top = column.path_in_schema.split(".")[0]
            if top in ("id", "frames", text):
                nbytes += column.total_uncompressed_size
            if text == REFERENCES and top == REFERENCES:
                # leaf values of list<string>: one per reference, one per empty or null list -> one training row each
                expanded = column.num_values
        rows.append(expanded)
    return {
        "size": os.path.getsize(path),
        "text": text,
        "rows": rows,
        "parquet_rows": parquet_rows,
        "bytes": nbytes,
    }


class ShardIndex:
    """Footer metadata of one stream's parquet files, in the order given: what the split is planned from.

    Units are row groups: `unit_file[u]`, `unit_group[u]` (row group in its file), `unit_rows[u]` (training rows:
    parquet rows, or references for eval-schema files). `fingerprint` hashes (file basename, size, rows) of every file,
    so a moved data folder has the same fingerprint and different data has another.

    Build it with `ShardIndex.from_files` (threads over the footers); `to_dict` / `from_dict` for a broadcast.
    """

    def __init__(self, files: list[str], footers: list[dict]):
        if not files:
            raise ValueError("no data files")
        self.files = [str(f) for f in files]
        self.sizes = [int(f["size"]) for f in footers]
        self.text_columns = [f["text"] for f in footers]
        self.file_rows = [int(sum(f["rows"])) for f in footers]
        self.bytes = int(sum(f["bytes"] for f in footers))
        self.footers = footers
        counts = [len(f["rows"]) for f in footers]
        self.unit_file = np.repeat(np.arange(len(files), dtype=np.int64), counts)
        self.unit_group = np.concatenate([np.arange(n, dtype=np.int64) for n in counts] + [np.zeros(0, np.int64)])
        self.unit_rows = np.array([r for f in footers for r in f["rows"]], dtype=np.int64)
        self.num_rows = int(self.unit_rows.sum())

    @classmethod
    def from_files(cls, files, num_threads: int = 16) -> "ShardIndex":
        files = [os.fspath(f) for f in files]
        with ThreadPoolExecutor(max(1, min(num_threads, len(files)))) as pool:
            footers = list(pool.map(_read_footer, files))
        return cls(files, footers)

    def to_dict(self) -> dict:
        return {"files": self.files, "footers": self.footers}

    @classmethod
    def from_dict(cls, state: dict) -> "ShardIndex":
        return cls(state["files"], state["footers"])

    @property
    def num_units(self) -> int:
        return len(self.unit_rows)

    @property
    def max_unit_rows(self) -> int:
        return int(self.unit_rows.max()) if self.num_units else 0

    @property
    def bytes_per_row(self) -> float:
        """Mean uncompressed bytes of the read columns per training row (what a buffered row costs in RAM)."""
        return self.bytes / max(1, self.num_rows)

    @property
    def fingerprint(self) -> str:
        items = [[os.path.basename(f), s, r] for f, s, r in zip(self.files, self.sizes, self.file_rows)]
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------- the split
def epoch_unit_order(num_units: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of the row groups in one epoch; identical on every rank (it depends on `seed` and `epoch` only)."""
    if not shuffle:
        return np.arange(num_units, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(num_units)


def part_bounds(num_rows: int, part: int, num_parts: int) -> tuple[int, int]:
    """Rows `[lo, hi)` of the epoch's concatenated rows that part `part` of `num_parts` yields (sizes differ by <= 1)."""
    return part * num_rows // num_parts, (part + 1) * num_rows // num_parts


def assign_part(unit_rows: np.ndarray, order: np.ndarray, part: int, num_parts: int) -> list[tuple[int, int, int]]:
    """The row slices `(unit, start, stop)` that part `part` of `num_parts` (rank x num_workers + worker) reads in an
    epoch whose row groups come in `order`. The epoch's rows, concatenated in that order, are cut into `num_parts`
    contiguous ranges; a range may start or end inside a row group. Cost: O(units) for the cumulative sum, then
    O(log units + slices)."""
    rows = np.asarray(unit_rows, dtype=np.int64)[order]
    ends = np.cumsum(rows)
    total = int(ends[-1]) if len(ends) else 0
    lo, hi = part_bounds(total, part, num_parts)
    slices = []
    k = int(np.searchsorted(ends, lo, side="right"))  # first unit that ends after row lo
    while lo < hi:
        begin = int(ends[k] - rows[k])
        start, stop = lo - begin, min(hi, int(ends[k])) - begin
        if stop > start:
            slices.append((int(order[k]), start, stop))
        lo = begin + stop
        k += 1
    return slices


def rows_decoded(start: int, stop: int, unit_rows: int) -> int:
    """Rows the reader decodes for slice `[start, stop)` of a row group of `unit_rows` rows: it reads from the row
    group's first row and stops after `stop` (parquet cannot start inside a row group)."""
    return unit_rows if (start, stop) == (0, unit_rows) else stop


# ----------------------------------------------------------------------------------------------- reading
class ParquetRowReader:
    """Reads row slices of row groups with pyarrow; keeps the last file open and the rows of the last slice it read
    (so a slice that spans two shuffle blocks is decoded once).

    Training-schema slices decode `[0, stop)` of the row group (parquet cannot start inside one) and drop the first
    `start`; eval-schema (references) slices read the row group's references column first to know which parquet rows
    hold training rows `[start, stop)`.
    """

    def __init__(self, index: ShardIndex):
        self.index = index
        self._file = None
        self._handle = None
        self._cache = (None, 0, 0, [])  # (unit, start, stop, rows)

    def _open(self, file: int):
        import pyarrow.parquet as pq

        if file != self._file:
            self._handle = pq.ParquetFile(self.index.files[file])
            self._file = file
        return self._handle

    @staticmethod
    def _first_rows(handle, group: int, stop: int, columns: list[str]) -> dict:
        batch = next(handle.iter_batches(batch_size=max(1, stop), row_groups=[group], columns=columns))
        return batch.to_pydict()

    def read(self, unit: int, start: int, stop: int) -> list[dict]:
        """Training rows `[start, stop)` of row group `unit`: dicts `{id, frames, caption}` (caption may be None)."""
        cached_unit, lo, hi, rows = self._cache
        if cached_unit == unit and lo <= start and stop <= hi:
            return rows[start - lo : stop - lo]
        rows = self._decode(unit, start, stop)
        self._cache = (unit, start, stop, rows)
        return rows

    def _decode(self, unit: int, start: int, stop: int) -> list[dict]:
        file, group = int(self.index.unit_file[unit]), int(self.index.unit_group[unit])
        full = (start, stop) == (0, int(self.index.unit_rows[unit]))
        handle = self._open(file)
        if self.index.text_columns[file] == CAPTION:
            columns = ["id", "frames", CAPTION]
            if full:
                data = handle.read_row_group(group, columns=columns).to_pydict()
            else:
                data = self._first_rows(handle, group, stop, columns)
            return [
                {"id": i, "frames": f, "caption": c}
                for i, f, c in zip(data["id"][start:stop], data["frames"][start:stop], data[CAPTION][start:stop])
            ]
        # eval schema: one training row per reference (an empty or null list gives one row without caption)
        refs = handle.read_row_group(group, columns=[REFERENCES]).column(0).to_pylist()
        counts = np.array([max(1, len(r or ())) for r in refs], dtype=np.int64)
        ends = np.cumsum(counts)
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(ends, stop - 1, side="right"))  # the parquet row holding training row stop-1
        if full:
            data = handle.read_row_group(group, columns=["id", "frames"]).to_pydict()
        else:
            data = self._first_rows(handle, group, last + 1, ["id", "frames"])
        rows = []
        for p in range(first, last + 1):
            for k, caption in enumerate(refs[p] or [None]):
                if start <= int(ends[p] - counts[p]) + k < stop:
                    rows.append({"id": f"{data['id'][p]}#{k}", "frames": data["frames"][p], "caption": caption})
        return rows


class ParquetReadCounter:
    """Counts the rows pyarrow decodes in this process (`ParquetFile.read_row_group` / `iter_batches`, the calls
    `ParquetRowReader` makes) while active: `with ParquetReadCounter() as counter: ...; counter.rows`. For the tests
    and `benchmarks/bench_resume.py`."""

    def __init__(self):
        self.rows = 0

    def __enter__(self):
        import pyarrow.parquet as pq

        self._saved = pq.ParquetFile.read_row_group, pq.ParquetFile.iter_batches
        read_row_group, iter_batches = self._saved
        counter = self

        def counted_read_row_group(handle, *args, **kwargs):
            table = read_row_group(handle, *args, **kwargs)
            counter.rows += table.num_rows
            return table

        def counted_iter_batches(handle, *args, **kwargs):
            for batch in iter_batches(handle, *args, **kwargs):
                counter.rows += batch.num_rows
                yield batch

        pq.ParquetFile.read_row_group, pq.ParquetFile.iter_batches = counted_read_row_group, counted_iter_batches
        return self

    def __exit__(self, *exc):
        import pyarrow.parquet as pq

        pq.ParquetFile.read_row_group, pq.ParquetFile.iter_batches = self._saved


# ----------------------------------------------------------------------------------------------- streaming batches
def worker_skip_count(consumed: int, worker: int, num_workers: int) -> int:
    """How many of the first `consumed` batches of a stream came from `worker`: batch j is produced by worker
    `j % num_workers` (the DataLoader serves its workers round robin, and every worker's stream is endless)."""
    return max(0, (consumed - worker + num_workers - 1) // num_workers)


def shuffle_block_rows(shuffle_buffer: int, window: int) -> int:
    """Rows per shuffle block: `shuffle_buffer` rounded up to whole bucketing windows (>= one window), so a window
    never straddles two blocks and a resume re-reads one block."""
    return max(1, math.ceil(max(0, shuffle_buffer) / window)) * window


class CaptionBatchStream(torch.utils.data.IterableDataset):
    """Endless stream of collated batches of one modality for one rank (each DataLoader worker serves its own part).

    Args:
        data_files (`list[str]`): parquet shards (training or eval row schema).
        processor (`FrozenCaptionerProcessor`): pixels (`video_processor`) and captions (`tokenize_captions`).
        modality (`str`): "image" or "video" (logs, batch metadata, and the stream's own permutations).
        batch_size (`int`): rows per batch (the last batch of an epoch, or one with corrupt rows, can be smaller).
        num_frames (`int`): frames per clip (1 for images).
        rank, world_size (`int`): this process and the number of processes.
        seed (`int`): shuffling seed, the same on every rank (the row-group order must agree across ranks).
        shuffle_buffer (`int`): rows per shuffle block (0 = no shuffling inside a part; the row-group order is still
            drawn per epoch). Rounded up to whole bucketing windows.
        shuffle_buffer_mb (`float`, *optional*): cap the block's RAM: at most this many MiB of rows, from the footers'
            mean row size (a block of video rows is ~20x the bytes of a block of image rows).
        bucket_batches (`int`): length bucketing window in batches (rows are sorted by caption length within
            `bucket_batches * batch_size` rows; <= 1 disables bucketing).
        consumed (`int`): batches of this stream already consumed (resume): each worker starts at the block of its
            next batch.
        image_size (`int`, *optional*): crop size override (e.g. 320 for fine-tuning); default: the processor's.
        max_epochs (`int`, *optional*): stop after this many passes (default: endless; tests and the benchmark).
        index (`ShardIndex`, *optional*): the files' footers, read once by the caller (default: read here).
        num_workers (`int`, *optional*): the DataLoader workers that will iterate this stream; only used to report
            the buffer sizes (the split itself uses the DataLoader's worker info).
    """

    def __init__(
        self,
        data_files,
        processor,
        modality: str,
        batch_size: int,
        num_frames: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        bucket_batches: int = 16,
        consumed: int = 0,
        image_size: int | None = None,
        max_epochs: int | None = None,
        shuffle_buffer_mb: float | None = None,
        index: ShardIndex | None = None,
    ):
        super().__init__()
        if isinstance(data_files, (str, os.PathLike)):
            data_files = [data_files]
        if not data_files and index is None:
            raise ValueError(f"no data files for the {modality} stream")
        self.index = index if index is not None else ShardIndex.from_files(list(data_files))
        self.data_files = self.index.files
        self.processor = processor
        self.modality = modality
        self.batch_size = int(batch_size)
        self.num_frames = int(num_frames)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.bucket_batches = int(bucket_batches)
        self.window = self.batch_size * max(1, self.bucket_batches)
        rows = self.shuffle_buffer
        if shuffle_buffer_mb is not None and rows > 0:
            rows = min(rows, max(1, int(shuffle_buffer_mb * 2**20 / max(1.0, self.index.bytes_per_row))))
        self.block_rows = shuffle_block_rows(rows, self.window)
        self.consumed = int(consumed)
        self.image_size = image_size
        self.max_epochs = max_epochs
        self._salt = zlib.crc32(modality.encode())  # image and video streams draw different permutations

    # -- the plan of one part: pure functions of (seed, part, epoch, block / window) -------------------------------
    def part_rows(self, part: int, num_parts: int) -> int:
        lo, hi = part_bounds(self.index.num_rows, part, num_parts)
        return hi - lo

    def batches_per_epoch(self, part_rows: int) -> int:
        windows, rest = divmod(part_rows, self.window)
        return windows * max(1, self.bucket_batches) + math.ceil(rest / self.batch_size)

    def position(self, batches: int, part: int, num_parts: int) -> tuple[int, int, int]:
        """Batches already consumed from a part -> (epoch, window in the epoch, batches of that window consumed)."""
        per_epoch = self.batches_per_epoch(self.part_rows(part, num_parts))
        epoch, index = divmod(batches, per_epoch)
        window, done = divmod(index, max(1, self.bucket_batches))
        return epoch, window, done

    def _rng(self, *key) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._salt, *key])

    def _part_slices(self, epoch: int, part: int, num_parts: int):
        order = epoch_unit_order(self.index.num_units, self.seed + self._salt, epoch, shuffle=self.shuffle_buffer > 0)
        return assign_part(self.index.unit_rows, order, part, num_parts)

    def read_rows(self, slices, begin: int, end: int, reader: ParquetRowReader, read_ahead: bool = True) -> list[dict]:
        """Rows `[begin, end)` of a part's epoch (its slices concatenated). `read_ahead`: decode the whole rest of a
        slice that the block ends inside (the next block takes it from the reader's cache) instead of stopping at
        the block's end (the first block of a resumed stream: its first batch waits for it)."""
        out, offset = [], 0
        for unit, start, stop in slices:
            length = stop - start
            if offset + length > begin and offset < end:
                a, b = start + max(begin, offset) - offset, start + min(end, offset + length) - offset
                out.extend(reader.read(unit, a, stop if read_ahead else b)[: b - a])
            offset += length
            if offset >= end:
                break
        return out

    def plan(self, part: int, num_parts: int, start_batch: int = 0):
        """Yields `(epoch, index, rows)`: the planned batches of one part, from batch `start_batch` of its endless
        stream on. Reads one block of rows at a time, starting at the block that holds batch `start_batch`."""
        tokenizer = self.processor.tokenizer
        n = self.part_rows(part, num_parts)
        if n == 0:
            raise RuntimeError(
                f"{self.modality} stream: rank {self.rank} got no rows for part {part} of {num_parts} "
                f"(world_size x num_workers) from {self.index.num_rows} rows in {len(self.index.files)} file(s); "
                "use fewer DataLoader workers or more data"
            )
        per_epoch = self.batches_per_epoch(n)
        nb = max(1, self.bucket_batches)
        epoch, window, skip = self.position(start_batch, part, num_parts)
        reader = ParquetRowReader(self.index)
        read_ahead = start_batch == 0
        while self.max_epochs is None or epoch < self.max_epochs:
            slices = self._part_slices(epoch, part, num_parts)
            block = window * self.window // self.block_rows
            while block * self.block_rows < n:
                lo, hi = block * self.block_rows, min(n, (block + 1) * self.block_rows)
                rows = self.read_rows(slices, lo, hi, reader, read_ahead)
                read_ahead = True
                if self.shuffle_buffer > 0:
                    rows = [rows[i] for i in self._rng(0, part, epoch, block).permutation(len(rows))]
                first = (lo // self.window) if window is None else window
                for w in range(first, math.ceil(hi / self.window)):
                    chunk = rows[w * self.window - lo : (w + 1) * self.window - lo]
                    if self.bucket_batches > 1:
                        texts = [row["caption"] or "" for row in chunk]
                        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
                        chunk = [chunk[i] for i in np.argsort(lengths, kind="stable")]
                    batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
                    if self.bucket_batches > 1:
                        batches = [batches[i] for i in self._rng(1, part, epoch, w).permutation(len(batches))]
                    for k in range(skip, len(batches)):
                        yield epoch, epoch * per_epoch + w * nb + k, batches[k]
                    skip = 0
                window = None
                block += 1
            epoch, window = epoch + 1, 0

    def collate(self, rows) -> tuple[dict | None, list[str], list[int]]:
        """Decode + preprocess a planned batch. Returns (model inputs or None if every row was corrupt, corrupt ids,
        frame counts of the rows that store fewer frames than `num_frames`)."""
        clips, captions, corrupt, short = [], [], [], []
        for row in rows:
            try:
                if not isinstance(row["caption"], str) or not row["caption"].strip():
                    raise CorruptSample("row has no caption")
                clips.append(decode_frames(row["frames"], self.num_frames))
                captions.append(row["caption"])
                if len(row["frames"]) < self.num_frames:
                    short.append(len(row["frames"]))
            except CorruptSample as err:
                logger.warning("skipping corrupt %s row %r: %s", self.modality, row["id"], err)
                corrupt.append(row["id"])
        if not clips:
            return None, corrupt, short
        kwargs = {}
        if self.image_size:
            kwargs = {
                "size": {"shortest_edge": self.image_size},
                "crop_size": {"height": self.image_size, "width": self.image_size},
            }
        pixels = self.processor.video_processor(videos=clips, do_sample_frames=False, return_tensors="pt", **kwargs)
        batch = {"pixel_values": pixels["pixel_values"]}  # (B, T, 3, H, W)
        batch.update(self.processor.tokenize_captions(captions))  # input_ids, attention_mask, labels (-100 on pad)
        return batch, corrupt, short

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        new_worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # After a resume the DataLoader starts its round robin at worker 0, but the next batch of the uninterrupted
        # run comes from worker `consumed % num_workers`: rotate the roles so the batch order is identical.
        worker = (new_worker + self.consumed) % num_workers
        skip = worker_skip_count(self.consumed, worker, num_workers)
        part, num_parts = self.rank * num_workers + worker, self.world_size * num_workers
        for epoch, index, rows in self.plan(part, num_parts, start_batch=skip):
            batch, corrupt, short = self.collate(rows)
            meta = {
                "modality": self.modality,
                "worker": worker,
                "index": index,
                "epoch": epoch,
                "ids": [row["id"] for row in rows],
                "corrupt_ids": corrupt,
                "short_frames": short,
            }
            yield {"batch": batch, "meta": meta}


class MixedModalityLoader:
    """One DataLoader per modality plus the modality draw; the training loop calls `next_batch()`.

    Args:
        streams (`dict[str, CaptionBatchStream]`): "image" and/or "video" streams (built with `consumed` set on resume).
        sampler (`ModalitySampler`): the per-rank draw.
        num_workers (`int`): DataLoader workers per stream.
    """

    def __init__(self, streams: dict, sampler: ModalitySampler, num_workers: int = 2, prefetch_factor: int = 2):
        self.streams = streams
        self.sampler = sampler
        self.num_workers = num_workers
        self.consumed = {name: stream.consumed for name, stream in streams.items()}
        self.corrupt = dict.fromkeys(streams, 0)
        self.rows = dict.fromkeys(streams, 0)
        self.short_frames = dict.fromkeys(streams, 0)  # rows with fewer stored frames than num_frames
        self._warned = set()
        self._iterators = {}
        self._loaders = {}
        for name, stream in streams.items():
            kwargs = (
                dict(num_workers=num_workers, persistent_workers=True, prefetch_factor=prefetch_factor)
                if num_workers
                else {}
            )
            self._loaders[name] = torch.utils.data.DataLoader(stream, batch_size=None, **kwargs)

    def _next_from(self, name: str) -> dict:
        if name not in self._iterators:
            self._iterators[name] = iter(self._loaders[name])
        while True:
            item = next(self._iterators[name])
            meta = item["meta"]
            self.consumed[name] += 1
            self.corrupt[name] += len(meta["corrupt_ids"])
            if meta["short_frames"]:
                self.short_frames[name] += len(meta["short_frames"])
                if name not in self._warned:  # once per stream, on the main process
                    self._warned.add(name)
                    logger.warning(
                        "%s stream: %d row(s) of this batch store %s frame(s), fewer than the %d asked for "
                        "(--num_frames); their frames are repeated. Counted in data/short_frame_rows; warned once.",
                        name, len(meta["short_frames"]), sorted(set(meta["short_frames"])), self.streams[name].num_frames,
                    )  # fmt: skip
            if item["batch"] is not None:  # a batch whose rows were all corrupt counts as consumed, then is skipped
                self.rows[name] += item["batch"]["input_ids"].shape[0]
                return item["batch"]

    def next_batch(self, modality: str | None = None) -> tuple[str, dict]:
        """(modality, batch): draw the modality (unless given), then take the next batch of that stream."""
        if modality is None:
            modality = self.sampler.draw()
        if modality not in self.streams:
            raise RuntimeError(f"the sampler drew {modality!r} but there is no {modality} data (check p_image)")
        return modality, self._next_from(modality)

    def stream_settings(self) -> dict:
        """What the data position depends on besides the data itself."""
        return {
            name: {"batch_size": s.batch_size, "block_rows": s.block_rows, "bucket_batches": s.bucket_batches,
                   "seed": s.seed, "fingerprint": s.index.fingerprint, "rows": s.index.num_rows}
            for name, s in self.streams.items()
        }  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "sampler": self.sampler.state_dict(),
            "consumed": dict(self.consumed),
            "corrupt": dict(self.corrupt),
            "rows": dict(self.rows),
            "short_frames": dict(self.short_frames),
            "num_workers": self.num_workers,
            "batch_sizes": {name: stream.batch_size for name, stream in self.streams.items()},
            "streams": self.stream_settings(),
        }

    def load_counters(self, state: dict):
        for key in ("corrupt", "rows", "short_frames"):
            getattr(self, key).update(state.get(key, {}))

    def close(self):
        self._iterators.clear()


def check_data_state(state: dict, num_workers: int, batch_sizes: dict, streams: dict | None = None):
    """The data position of a checkpoint is only meaningful with the same data, workers, batch sizes and shuffle
    blocks. `streams`: this run's `MixedModalityLoader.stream_settings()`-shaped dict."""
    if state["num_workers"] != num_workers or state["batch_sizes"] != batch_sizes:
        raise ValueError(
            f"cannot restore the data position: the checkpoint used num_workers={state['num_workers']}, "
            f"batch_sizes={state['batch_sizes']}; this run uses num_workers={num_workers}, batch_sizes={batch_sizes}"
        )
    if streams is None:
        return
    for name, now in streams.items():
        then = state.get("streams", {}).get(name)
        if then is None:
            raise ValueError(f"cannot restore the data position: the checkpoint has no {name} stream")
        if then["fingerprint"] != now["fingerprint"]:
            raise ValueError(
                f"the {name} data differ from the checkpoint's: {then['rows']} rows then, {now['rows']} now, and the "
                "(file name, size, rows) of the files differ. Resume on the same data files (moving their folder is "
                "fine), or start a new run"
            )
        changed = {k: (then[k], now[k]) for k in ("batch_size", "block_rows", "bucket_batches", "seed") if then[k] != now[k]}  # fmt: skip
        if changed:
            raise ValueError(f"cannot restore the {name} data position: (checkpoint, now) differ for {changed}")


def write_parquet_shard(path, rows: list[dict], row_group_size: int | None = None) -> str:
    """Write training rows (`id, frames, caption, source`) or eval rows (`id, frames, references`) to one parquet
    shard with the builders' schema (frames as `list<binary>`). Used by the tests, the demo and the benchmark."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        raise ValueError("no rows to write")
    fields = [pa.field("id", pa.string()), pa.field("frames", pa.list_(pa.binary()))]
    if "references" in rows[0]:
        fields.append(pa.field("references", pa.list_(pa.string())))
    else:
        fields += [pa.field("caption", pa.string()), pa.field("source", pa.string())]
    schema = pa.schema(fields)
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in fields} for row in rows], schema=schema)
    pq.write_table(table, str(path), row_group_size=row_group_size)
    return str(path)
