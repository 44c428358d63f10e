"""Streaming training data: the per-rank image/video modality draw, length-bucketed caption batches, collate.

Training shards are parquet files with rows `{"id": str, "frames": list<binary> (T JPEG frames; T=1 for an image),
"caption": str, "source": str}` (written by `datasets_scripts/build_*.py`). Evaluation rows are
`{"id": str, "frames": list<binary>, "references": list<str>}`.

Pieces, top to bottom:

* `ModalitySampler`: each step every process draws "image" (p=0.95) or "video" (p=0.05) from its own generator seeded
  with `seed + rank` (the paper; "synchronized" seeds every rank with `seed`, the unstable variant it compares with).
* `CaptionBatchStream`: a torch `IterableDataset` over one modality's shards, read with
  `datasets.load_dataset("parquet", streaming=True)` and split with `split_dataset_by_node` over
  `world_size x num_workers` (rank and DataLoader worker). It yields whole batches: rows are buffered, sorted by caption
  length in tokens (length bucketing, less padding), cut into batches and the batch order shuffled. Frames are decoded
  only after a batch is planned, so resuming can fast-forward without decoding. Corrupt rows (undecodable JPEG, no
  frames) are dropped from their batch and counted.
* `MixedModalityLoader`: one DataLoader per modality; serves the batch the sampler asks for, keeps the data position
  (batches consumed per stream) and the corrupt-row counts, and restores them on resume.
"""

import io
import logging
import random

import numpy as np
import torch
from PIL import Image

from modeling_frozencaptioner import sample_frame_indices


logger = logging.getLogger(__name__)

IMAGE, VIDEO = "image", "video"
MODALITIES = (IMAGE, VIDEO)


class CorruptSample(ValueError):
    """A row whose frames cannot be decoded (bad JPEG bytes, no frames, frames of different sizes)."""


# ----------------------------------------------------------------------------------------------- modality draw
class ModalitySampler:
    """Draws the modality of every micro-batch on this process.

    Args:
        p_image (`float`): probability of an image batch (the paper: 0.95; 1.0 = images only, 0.0 = videos only).
        seed (`int`): base seed.
        rank (`int`): process index; the generator is seeded with `seed + rank`, so ranks draw independently and each
            rank's sequence is reproducible.
        synchronized (`bool`): seed every rank with `seed` (all processes draw the same modality each step).
    """

    def __init__(self, p_image: float = 0.95, seed: int = 0, rank: int = 0, synchronized: bool = False):
        if not 0.0 <= p_image <= 1.0:
            raise ValueError(f"p_image must be in [0, 1], got {p_image}")
        self.p_image = float(p_image)
        self.seed = int(seed) + (0 if synchronized else int(rank))
        self.synchronized = synchronized
        self.generator = np.random.Generator(np.random.PCG64(self.seed))
        self.num_draws = 0

    def draw(self) -> str:
        self.num_draws += 1
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
    array. Only the sampled frames are decoded. Raises `CorruptSample` on any bad input."""
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


# ----------------------------------------------------------------------------------------------- streaming batches
def worker_skip_count(consumed: int, worker: int, num_workers: int) -> int:
    """How many of the first `consumed` batches of a stream came from `worker`: batch j is produced by worker
    `j % num_workers` (the DataLoader serves its workers round robin)."""
    return max(0, (consumed - worker + num_workers - 1) // num_workers)


class CaptionBatchStream(torch.utils.data.IterableDataset):
    """Endless stream of collated batches of one modality for one rank.

    Args:
        data_files (`list[str]`): parquet shards (training row schema).
        processor (`FrozenCaptionerProcessor`): pixels (`video_processor`) and captions (`tokenize_captions`).
        modality (`str`): "image" or "video" (only used for logs and the batch metadata).
        batch_size (`int`): rows per batch (the last batch of an epoch, or one with corrupt rows, can be smaller).
        num_frames (`int`): frames per clip (1 for images).
        rank, world_size (`int`): this process and the number of processes.
        seed (`int`): shuffling seed, the same on every rank (shard order must agree across ranks).
        shuffle_buffer (`int`): `IterableDataset.shuffle` buffer size (0 = no shuffling).
        bucket_batches (`int`): length bucketing window in batches (rows are sorted by caption length within
            `bucket_batches * batch_size` rows; <= 1 disables bucketing).
        consumed (`int`): batches of this stream already consumed (resume): workers fast-forward without decoding.
        image_size (`int`, *optional*): crop size override (e.g. 320 for fine-tuning); default: the processor's.
        max_epochs (`int`, *optional*): stop after this many passes (default: endless; tests and the benchmark).
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
    ):
        super().__init__()
        if isinstance(data_files, str):
            data_files = [data_files]
        if not data_files:
            raise ValueError(f"no data files for the {modality} stream")
        self.data_files = sorted(str(f) for f in data_files)
        self.processor = processor
        self.modality = modality
        self.batch_size = int(batch_size)
        self.num_frames = int(num_frames)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.bucket_batches = int(bucket_batches)
        self.consumed = int(consumed)
        self.image_size = image_size
        self.max_epochs = max_epochs

    # -- the row stream of one (rank, worker) ----------------------------------------------------------------------
    def _rows(self, worker: int, num_workers: int):
        import datasets
        from datasets.distributed import split_dataset_by_node

        ds = datasets.load_dataset("parquet", data_files=self.data_files, split="train", streaming=True)
        world = self.world_size * num_workers
        if ds.num_shards % world:
            ds = ds.reshard()  # parquet: one shard per row group, may make shard-level splitting possible
        # One split over rank x worker: shard-level when num_shards % world == 0, else every `world`-th example
        # ("examples" strategy), so no worker idles and nothing hangs when there are fewer shards than workers.
        ds = split_dataset_by_node(ds, rank=self.rank * num_workers + worker, world_size=world)
        if self.shuffle_buffer > 0:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        epoch = 0
        while self.max_epochs is None or epoch < self.max_epochs:
            ds.set_epoch(epoch)
            num_rows = 0
            # `.iter` (not `iter(ds)`): inside a DataLoader worker, `iter(ds)` would split the shards by worker a
            # second time; the worker split is already part of `split_dataset_by_node` above.
            for columns in ds.iter(batch_size=64):
                for frames, caption, row_id in zip(columns["frames"], columns["caption"], columns["id"]):
                    num_rows += 1
                    yield epoch, {"id": row_id, "frames": frames, "caption": caption}
            if num_rows == 0:
                raise RuntimeError(
                    f"{self.modality} stream: rank {self.rank} worker {worker} got no rows from {len(self.data_files)} "
                    f"file(s) split {world} ways (world_size x num_workers); use fewer DataLoader workers or more data"
                )
            epoch += 1

    def _plans(self, worker: int, num_workers: int):
        """Batches as lists of raw rows, length-bucketed; deterministic given (seed, rank, worker)."""
        rng = random.Random(f"{self.seed}-{self.rank}-{worker}-{self.modality}")
        tokenizer = self.processor.tokenizer
        window = self.batch_size * max(1, self.bucket_batches)
        buffer, buffer_epoch = [], 0

        def flush(rows):
            if self.bucket_batches > 1:
                rows = sorted(rows, key=lambda row: row["length"])
            batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
            if self.bucket_batches > 1:
                rng.shuffle(batches)
            return batches

        for epoch, row in self._rows(worker, num_workers):
            if epoch != buffer_epoch and buffer:
                for batch in flush(buffer):
                    yield buffer_epoch, batch
                buffer = []
            buffer_epoch = epoch
            if self.bucket_batches > 1:
                row["length"] = len(tokenizer(row["caption"], add_special_tokens=False)["input_ids"])
            buffer.append(row)
            if len(buffer) >= window:
                for batch in flush(buffer):
                    yield buffer_epoch, batch
                buffer = []
        for batch in flush(buffer):
            yield buffer_epoch, batch

    def collate(self, rows) -> tuple[dict | None, list[str]]:
        """Decode + preprocess a planned batch. Returns (model inputs or None if every row was corrupt, corrupt ids)."""
        clips, captions, corrupt = [], [], []
        for row in rows:
            try:
                clips.append(decode_frames(row["frames"], self.num_frames))
                captions.append(row["caption"])
            except CorruptSample as err:
                logger.warning("skipping corrupt %s row %r: %s", self.modality, row["id"], err)
                corrupt.append(row["id"])
        if not clips:
            return None, corrupt
        kwargs = {}
        if self.image_size:
            kwargs = {
                "size": {"shortest_edge": self.image_size},
                "crop_size": {"height": self.image_size, "width": self.image_size},
            }
        pixels = self.processor.video_processor(videos=clips, do_sample_frames=False, return_tensors="pt", **kwargs)
        batch = {"pixel_values": pixels["pixel_values"]}  # (B, T, 3, H, W)
        batch.update(self.processor.tokenize_captions(captions))  # input_ids, attention_mask, labels (-100 on pad)
        return batch, corrupt

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        new_worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # After a resume the DataLoader starts its round robin at worker 0, but the next batch of the uninterrupted
        # run comes from worker `consumed % num_workers`: rotate the roles so the batch order is identical.
        worker = (new_worker + self.consumed) % num_workers
        skip = worker_skip_count(self.consumed, worker, num_workers)
        for index, (epoch, rows) in enumerate(self._plans(worker, num_workers)):
            if index < skip:
                continue  # fast-forward: planned, never decoded
            batch, corrupt = self.collate(rows)
            meta = {
                "modality": self.modality,
                "worker": worker,
                "index": index,
                "epoch": epoch,
                "corrupt_ids": corrupt,
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
            self.consumed[name] += 1
            self.corrupt[name] += len(item["meta"]["corrupt_ids"])
            if item["batch"] is not None:  # a batch whose rows were all corrupt counts as consumed, then is skipped
                self.rows[name] += item["batch"]["input_ids"].shape[0]
                return item["batch"]

    def next_batch(self) -> tuple[str, dict]:
        """(modality, batch): draw the modality, then take the next batch of that stream."""
        modality = self.sampler.draw()
        if modality not in self.streams:
            raise RuntimeError(f"the sampler drew {modality!r} but there is no {modality} data (check p_image)")
        return modality, self._next_from(modality)

    def state_dict(self) -> dict:
        return {
            "sampler": self.sampler.state_dict(),
            "consumed": dict(self.consumed),
            "corrupt": dict(self.corrupt),
            "rows": dict(self.rows),
            "num_workers": self.num_workers,
            "batch_sizes": {name: stream.batch_size for name, stream in self.streams.items()},
        }

    def close(self):
        self._iterators.clear()


def check_data_state(state: dict, num_workers: int, batch_sizes: dict):
    """The data position of a checkpoint is only meaningful with the same workers and batch sizes."""
    if state["num_workers"] != num_workers or state["batch_sizes"] != batch_sizes:
        raise ValueError(
            f"cannot restore the data position: the checkpoint used num_workers={state['num_workers']}, "
            f"batch_sizes={state['batch_sizes']}; this run uses num_workers={num_workers}, batch_sizes={batch_sizes}"
        )


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
