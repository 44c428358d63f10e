"""train/data.py: per-rank modality draws, streaming split by rank x worker, corrupt rows, bucketing, data position."""

import numpy as np
import pytest
import torch

from train.data import (
    IMAGE,
    VIDEO,
    CaptionBatchStream,
    MixedModalityLoader,
    ModalitySampler,
    decode_frames,
    worker_skip_count,
    write_parquet_shard,
)
from train.shapes import VOCABULARY, training_rows


@pytest.fixture(scope="module")
def processor():
    from frozencaptioner.tiny import tiny_processor, tiny_tokenizer

    return tiny_processor(tiny_tokenizer(VOCABULARY))


def _draws(sampler, n):
    return [sampler.draw() for _ in range(n)]


def test_two_ranks_draw_independently_and_reproducibly():
    rank0, rank1 = _draws(ModalitySampler(0.5, seed=3, rank=0), 200), _draws(ModalitySampler(0.5, seed=3, rank=1), 200)
    assert rank0 != rank1  # independent per-rank streams (seed + rank)
    assert rank0 == _draws(ModalitySampler(0.5, seed=3, rank=0), 200)  # each reproducible
    assert rank1 == _draws(ModalitySampler(0.5, seed=3, rank=1), 200)
    # steps where the ranks disagree: ~half of them for p=0.5 if independent, none if synchronized
    disagree = sum(a != b for a, b in zip(rank0, rank1))
    assert 60 < disagree < 140
    sync0 = _draws(ModalitySampler(0.5, seed=3, rank=0, synchronized=True), 200)
    sync1 = _draws(ModalitySampler(0.5, seed=3, rank=1, synchronized=True), 200)
    assert sync0 == sync1


def test_paper_probability_and_state_round_trip():
    sampler = ModalitySampler(0.95, seed=0, rank=2)
    draws = _draws(sampler, 4000)
    video_fraction = draws.count(VIDEO) / len(draws)
    assert abs(video_fraction - 0.05) < 5 * (0.05 * 0.95 / 4000) ** 0.5
    state = sampler.state_dict()
    ahead = _draws(sampler, 50)
    restored = ModalitySampler(0.95, seed=0, rank=2)
    restored.load_state_dict(state)
    assert _draws(restored, 50) == ahead
    assert _draws(ModalitySampler(1.0, seed=0), 100) == [IMAGE] * 100
    assert _draws(ModalitySampler(0.0, seed=0), 100) == [VIDEO] * 100
    with pytest.raises(ValueError):
        ModalitySampler(1.5)


def test_decode_frames_rejects_corrupt_rows():
    rows = training_rows(1, "video", num_frames=6)
    clip = decode_frames(rows[0]["frames"], 3)
    assert clip.shape == (3, 32, 32, 3) and clip.dtype == np.uint8
    from train.data import CorruptSample

    for bad in ([], [b""], [b"\xff\xd8\xff garbage"], rows[0]["frames"][:1] + [b"not a jpeg"]):
        with pytest.raises(CorruptSample):
            decode_frames(bad, 2)


def _iterate(stream, num_workers):
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=num_workers, timeout=120 if num_workers else 0
    )
    return list(loader)


def test_one_shard_two_ranks_two_workers_no_hang_disjoint_and_corrupt_counted(tmp_path, processor):
    rows = training_rows(42, "image", seed=1)
    rows[5]["frames"] = [b"\x00\x01 undecodable"]
    rows[11]["frames"] = []
    shard = write_parquet_shard(tmp_path / "only.parquet", rows)  # 1 shard < 2 ranks x 2 workers
    seen, corrupt, per_worker = [], [], {}
    for rank in range(2):
        stream = CaptionBatchStream([shard], processor, IMAGE, batch_size=4, num_frames=1, rank=rank, world_size=2,
                                    shuffle_buffer=0, bucket_batches=1, max_epochs=1)  # fmt: skip
        for item in _iterate(stream, num_workers=2):
            corrupt += item["meta"]["corrupt_ids"]
            batch = item["batch"]
            assert batch is None or batch["pixel_values"].shape[1:] == (1, 3, 16, 16)
            per_worker.setdefault((rank, item["meta"]["worker"]), 0)
            per_worker[(rank, item["meta"]["worker"])] += 0 if batch is None else batch["input_ids"].shape[0]
            seen.append(0 if batch is None else batch["input_ids"].shape[0])
    assert sorted(corrupt) == sorted([rows[5]["id"], rows[11]["id"]])
    assert sum(seen) == 40  # every good row exactly once over 2 ranks x 2 workers
    assert set(per_worker) == {(0, 0), (0, 1), (1, 0), (1, 1)} and all(n > 0 for n in per_worker.values())


def test_rank_worker_split_is_a_partition(tmp_path, processor):
    """Which rows each (rank, worker) gets: disjoint, complete, with several shards too."""
    rows = training_rows(30, "image", seed=2)
    shards = [write_parquet_shard(tmp_path / f"s{i}.parquet", rows[i * 10 : (i + 1) * 10]) for i in range(3)]
    got = []
    for rank in range(2):
        for worker in range(2):
            stream = CaptionBatchStream(shards, processor, IMAGE, 4, 1, rank=rank, world_size=2, shuffle_buffer=0,
                                        bucket_batches=1, max_epochs=1)  # fmt: skip
            got.append([row["id"] for _, _, batch in stream.plan(rank * 2 + worker, 4) for row in batch])
    flat = [i for part in got for i in part]
    assert sorted(flat) == sorted(r["id"] for r in rows) and all(got)


def test_length_bucketing_cuts_padding(tmp_path, processor):
    rng = np.random.default_rng(0)
    rows = training_rows(96, "image", seed=3)
    for row in rows:  # captions of 1..12 words
        row["caption"] = " ".join(["ball"] * int(rng.integers(1, 13)))
    shard = write_parquet_shard(tmp_path / "s.parquet", rows)

    def padding(bucket_batches):
        stream = CaptionBatchStream([shard], processor, IMAGE, 8, 1, shuffle_buffer=0, bucket_batches=bucket_batches,
                                    max_epochs=1)  # fmt: skip
        masks = [item["batch"]["attention_mask"] for item in _iterate(stream, 0)]
        assert sum(m.shape[0] for m in masks) == 96
        return sum((m == 0).sum().item() for m in masks) / sum(m.numel() for m in masks)

    assert padding(12) < 0.5 * padding(1)


def test_resumed_stream_continues_exactly(tmp_path, processor, consumed=3):
    """A stream rebuilt with `consumed=k` (2 workers, k odd: the worker roles rotate) yields the same batches as
    batches k.. of a fresh stream."""
    shard = write_parquet_shard(tmp_path / "v.parquet", training_rows(40, "video", seed=4, num_frames=4))

    def stream(consumed):
        return CaptionBatchStream([shard], processor, VIDEO, 3, 4, shuffle_buffer=16, bucket_batches=2,
                                  consumed=consumed, max_epochs=2)  # fmt: skip

    full = _iterate(stream(0), 2)
    resumed = _iterate(stream(consumed), 2)
    assert len(resumed) == len(full) - consumed
    for a, b in zip(full[consumed:], resumed):
        assert torch.equal(a["batch"]["input_ids"], b["batch"]["input_ids"])
        assert torch.equal(a["batch"]["pixel_values"], b["batch"]["pixel_values"])


def test_worker_skip_count():
    assert [worker_skip_count(5, w, 2) for w in range(2)] == [3, 2]
    assert [worker_skip_count(0, w, 3) for w in range(3)] == [0, 0, 0]
    assert sum(worker_skip_count(7, w, 3) for w in range(3)) == 7


def test_mixed_loader_one_modality_per_batch_and_skips_all_corrupt_batches(tmp_path, processor):
    images = training_rows(16, "image", seed=5)
    for row in images[:4]:
        row["frames"] = [b"broken"]  # the first planned batch (no shuffling, no bucketing) is entirely corrupt
    videos = training_rows(8, "video", seed=6, num_frames=4)
    streams = {
        IMAGE: CaptionBatchStream([write_parquet_shard(tmp_path / "i.parquet", images)], processor, IMAGE, 4, 1,
                                  shuffle_buffer=0, bucket_batches=1),
        VIDEO: CaptionBatchStream([write_parquet_shard(tmp_path / "v.parquet", videos)], processor, VIDEO, 2, 4,
                                  shuffle_buffer=0, bucket_batches=1),
    }  # fmt: skip
    loader = MixedModalityLoader(streams, ModalitySampler(0.5, seed=1), num_workers=0)
    for _ in range(12):
        modality, batch = loader.next_batch()
        frames = batch["pixel_values"].shape[1]
        assert frames == (1 if modality == IMAGE else 4)
        assert batch["pixel_values"].shape[0] == batch["input_ids"].shape[0] == (4 if modality == IMAGE else 2)
    state = loader.state_dict()
    assert state["corrupt"][IMAGE] >= 4 and state["corrupt"][VIDEO] == 0
    assert state["consumed"][IMAGE] + state["consumed"][VIDEO] >= 12
