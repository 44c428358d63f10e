"""The (rank, worker) split of the shards at the paper's scale, rows read through the real parquet reader, the O(1)
resume of the data position, eval-schema rows, the data fingerprint, the frame-count warning (issues 9 and 10)."""

import logging
import shutil

import numpy as np
import pytest

from train.data import (
    IMAGE,
    VIDEO,
    CaptionBatchStream,
    MixedModalityLoader,
    ModalitySampler,
    ParquetReadCounter,
    ShardIndex,
    assign_part,
    check_data_state,
    epoch_unit_order,
    rows_decoded,
    shuffle_block_rows,
    write_parquet_shard,
)
from train.shapes import VOCABULARY, eval_rows, training_rows


@pytest.fixture(scope="module")
def processor():
    from frozencaptioner.tiny import tiny_processor, tiny_tokenizer

    return tiny_processor(tiny_tokenizer(VOCABULARY))


@pytest.fixture
def counter():
    with ParquetReadCounter() as c:
        yield c


# ----------------------------------------------------------------------------------------------- the split
def _layout(num_files: int, seed: int = 0) -> np.ndarray:
    """Rows per row group: 50K files of one row group (today's builders), 1K files of 10 row groups, 17 big files."""
    rng = np.random.default_rng(seed)
    groups_per_file = 1 if num_files >= 50_000 else 10 if num_files >= 1000 else 40
    return rng.integers(200, 1800, size=num_files * groups_per_file)


@pytest.mark.parametrize("num_files", [50_000, 1000, 17])
def test_split_64_ranks_x_8_workers_simulation(num_files):
    """The loader's own assignment function for every (rank, worker) of 64 x 8: rows read <= rows yielded + one row
    group, rows yielded differ by <= one row group, every row exactly once per epoch (two epochs, two orders)."""
    unit_rows = _layout(num_files)
    num_parts, largest = 64 * 8, int(unit_rows.max())
    for epoch in range(2):
        order = epoch_unit_order(len(unit_rows), seed=5, epoch=epoch)
        covered = np.zeros(len(unit_rows), dtype=np.int64)
        yielded, read = [], []
        pieces = {}
        for part in range(num_parts):
            slices = assign_part(unit_rows, order, part, num_parts)
            yielded.append(sum(stop - start for _, start, stop in slices))
            read.append(sum(rows_decoded(start, stop, int(unit_rows[u])) for u, start, stop in slices))
            for unit, start, stop in slices:
                covered[unit] += stop - start
                pieces.setdefault(unit, []).append((start, stop))
        yielded, read = np.array(yielded), np.array(read)
        assert (read <= yielded + largest).all()
        assert yielded.max() - yielded.min() <= 1 <= largest  # contiguous ranges of floor/ceil(rows / parts)
        assert (yielded > 0).all()
        np.testing.assert_array_equal(covered, unit_rows)  # every row once ...
        for unit, spans in pieces.items():  # ... and the slices of a row group tile it without overlap
            spans.sort()
            assert spans[0][0] == 0 and spans[-1][1] == unit_rows[unit]
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    print(
        f"{num_files} files: {yielded.min()}-{yielded.max()} rows per worker, max extra read {(read - yielded).max()}"
    )


def test_planning_reads_footers_only(tmp_path, counter, processor):
    rows = training_rows(60, "image", seed=3)
    files = [write_parquet_shard(tmp_path / f"f{i}.parquet", rows[i * 20 : (i + 1) * 20], 6) for i in range(3)]
    index = ShardIndex.from_files(files)
    stream = CaptionBatchStream(files, processor, IMAGE, 4, 1, index=index, consumed=7)
    assert stream.position(7, part=0, num_parts=1) == (0, 0, 7)  # 60 rows = 15 batches, one 16-batch window
    assert counter.rows == 0
    assert index.num_units == 12 and index.num_rows == 60 and index.max_unit_rows == 6


@pytest.mark.parametrize("num_files", [3, 5])
def test_two_ranks_two_workers_read_only_their_rows(tmp_path, counter, processor, num_files):
    """Rows read through the real parquet reader, per (rank, worker), over files with several row groups each."""
    rows = training_rows(23 * num_files, "image", seed=num_files)
    files = []
    for i in range(num_files):
        part = rows[i * 23 : (i + 1) * 23]
        files.append(write_parquet_shard(tmp_path / f"s{i}.parquet", part, row_group_size=5 + i))
    index = ShardIndex.from_files(files)
    seen, yielded, read = [], [], []
    for rank in range(2):
        stream = CaptionBatchStream(files, processor, IMAGE, 3, 1, rank=rank, world_size=2, shuffle_buffer=8,
                                    bucket_batches=2, max_epochs=1, index=index)  # fmt: skip
        for worker in range(2):
            before = counter.rows
            ids = [row["id"] for _, _, batch in stream.plan(rank * 2 + worker, 4) for row in batch]
            read.append(counter.rows - before)
            yielded.append(len(ids))
            seen += ids
    largest = index.max_unit_rows
    assert sorted(seen) == sorted(r["id"] for r in rows)  # every row exactly once
    assert all(r <= y + largest for r, y in zip(read, yielded)), (read, yielded)
    assert max(yielded) - min(yielded) <= 1
    assert sum(read) < 2 * len(rows)  # before: every worker read every row (4x) and kept a quarter


# ----------------------------------------------------------------------------------------------- O(1) resume
@pytest.fixture(scope="module")
def resume_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_shards")
    rows = training_rows(2400, "image", seed=11, size=16)
    return [write_parquet_shard(root / f"r{i}.parquet", rows[i * 600 : (i + 1) * 600], 50) for i in range(4)]


@pytest.mark.parametrize("consumed_rows", [10**3, 10**5])
def test_resume_reads_one_block_not_the_consumed_rows(resume_shards, processor, consumed_rows):
    """A stream resumed after `consumed_rows` rows reads at most shuffle buffer + bucket window + one row group before
    its first batch, and that batch is the uninterrupted stream's next one (10^5 rows = 42 epochs of this data)."""
    batch_size, bucket_batches, shuffle_buffer = 8, 4, 300
    consumed = consumed_rows // batch_size

    def stream(consumed=0):
        return CaptionBatchStream(resume_shards, processor, IMAGE, batch_size, 1, seed=3, shuffle_buffer=shuffle_buffer,
                                  bucket_batches=bucket_batches, consumed=consumed)  # fmt: skip

    full = stream()
    expected = None
    for _, index, batch in full.plan(0, 1):
        if index == consumed:
            expected = [row["id"] for row in batch]
            break
    with ParquetReadCounter() as counter:
        item = next(iter(stream(consumed)))
    bound = shuffle_buffer + batch_size * bucket_batches + full.index.max_unit_rows
    assert counter.rows <= bound, (counter.rows, bound)
    assert item["meta"]["index"] == consumed and item["meta"]["ids"] == expected
    assert item["batch"]["input_ids"].shape[0] == len(expected)


def test_block_rows_round_up_to_whole_windows():
    assert shuffle_block_rows(300, 32) == 320 and shuffle_block_rows(0, 32) == 32 and shuffle_block_rows(64, 32) == 64


def test_shuffle_buffer_mb_caps_the_block(tmp_path, processor):
    rows = training_rows(200, "video", seed=4, num_frames=4)
    shard = write_parquet_shard(tmp_path / "v.parquet", rows)
    index = ShardIndex.from_files([shard])
    per_row = index.bytes_per_row
    stream = CaptionBatchStream([shard], processor, VIDEO, 2, 4, shuffle_buffer=10_000, shuffle_buffer_mb=40 * per_row / 2**20,
                                bucket_batches=2, index=index)  # fmt: skip
    assert stream.block_rows == 40  # 40 rows' worth of MiB, a multiple of the 4-row window
    assert CaptionBatchStream([shard], processor, VIDEO, 2, 4, shuffle_buffer=10_000, bucket_batches=2,
                              index=index).block_rows == 10_000  # fmt: skip


# ----------------------------------------------------------------------------------------------- eval-schema rows
def test_eval_rows_train_one_row_per_reference(tmp_path, processor):
    """`caption_benchmarks.py --train_layout per_video` writes `references` rows: the trainer expands them (before:
    a KeyError on `caption` in the worker). An empty reference list is one corrupt row, counted, not a crash."""
    rows = eval_rows(9, seed=2)  # 5 references each
    rows[4]["references"] = []
    files = [write_parquet_shard(tmp_path / "ev0.parquet", rows[:5], 2), write_parquet_shard(tmp_path / "ev1.parquet", rows[5:], 3)]  # fmt: skip
    index = ShardIndex.from_files(files)
    assert index.num_rows == 8 * 5 + 1
    captions, corrupt = [], []
    for worker in range(3):  # slices cut inside row groups and inside one video's references
        stream = CaptionBatchStream(files, processor, VIDEO, 4, 4, shuffle_buffer=0, bucket_batches=1, max_epochs=1,
                                    index=index)  # fmt: skip
        for _, _, batch in stream.plan(worker, 3):
            collated, bad, _ = stream.collate(batch)
            corrupt += bad
            captions += [row["caption"] for row in batch if row["id"] not in bad]
            assert collated is None or collated["pixel_values"].shape[1:] == (4, 3, 16, 16)
    expected = [ref for row in rows for ref in row["references"]]
    assert sorted(captions) == sorted(expected)
    assert corrupt == [f"{rows[4]['id']}#0"]


# ----------------------------------------------------------------------------------------------- data fingerprint
def test_fingerprint_survives_a_move_and_refuses_other_data(tmp_path, processor):
    rows = training_rows(24, "image", seed=6)
    (tmp_path / "a").mkdir()
    files = [write_parquet_shard(tmp_path / "a" / f"s{i}.parquet", rows[i * 12 : (i + 1) * 12]) for i in range(2)]
    moved = shutil.copytree(tmp_path / "a", tmp_path / "b")
    other = write_parquet_shard(tmp_path / "c.parquet", rows[:11])

    def loader(paths):
        streams = {IMAGE: CaptionBatchStream(paths, processor, IMAGE, 4, 1)}
        return MixedModalityLoader(streams, ModalitySampler(1.0), num_workers=0)

    state = loader(files).state_dict()
    check_data_state(state, 0, {IMAGE: 4}, loader([str(moved / "s0.parquet"), str(moved / "s1.parquet")]).stream_settings())  # fmt: skip
    with pytest.raises(ValueError, match="image data differ from the checkpoint"):
        check_data_state(state, 0, {IMAGE: 4}, loader([files[0], other]).stream_settings())


# ----------------------------------------------------------------------------------------------- frame counts
def test_more_frames_than_stored_warns_once_per_stream(tmp_path, processor, caplog):
    videos = training_rows(12, "video", seed=7, num_frames=4)
    stream = CaptionBatchStream([write_parquet_shard(tmp_path / "v.parquet", videos)], processor, VIDEO, 2, 8,
                                shuffle_buffer=0, bucket_batches=1)  # fmt: skip
    loader = MixedModalityLoader({VIDEO: stream}, ModalitySampler(0.0), num_workers=0)
    with caplog.at_level(logging.WARNING, logger="train.data"):
        for _ in range(4):
            loader.next_batch()
    warnings = [r.getMessage() for r in caplog.records if "fewer than the 8" in r.getMessage()]
    assert len(warnings) == 1 and "store [4] frame(s)" in warnings[0]
    assert loader.state_dict()["short_frames"][VIDEO] == 8


def test_modality_sequence_is_a_fixed_order():
    sampler = ModalitySampler(0.95, sequence=[IMAGE, VIDEO])
    assert [sampler.draw() for _ in range(5)] == [IMAGE, VIDEO, IMAGE, VIDEO, IMAGE]
    with pytest.raises(ValueError):
        ModalitySampler(sequence=["audio"])
