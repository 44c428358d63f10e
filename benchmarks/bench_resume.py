"""Time to the first batch after a resume: 10^2 vs 10^5 consumed rows, `pretrain_mix`'s stream settings.

    python benchmarks/bench_resume.py                   # image stream: batch 32, bucket window 16 batches, 10K block
    python benchmarks/bench_resume.py --consumed_rows 100 1000000

A resumed `train.data.CaptionBatchStream` starts at the shuffle block that holds its next batch: it reads one block
(`shuffle_buffer` rows rounded up to a bucketing window) plus at most one row group, decodes one batch, whatever the
number of rows consumed before the checkpoint (goal: 10^5 within 2x of 10^2). For scale, the script also replays the
consumed rows through the same reader (what the old fast-forward had to do, before JPEG bytes and tokenising).
The data: `--rows` rows of the builders' schema in files of `--rows_per_file` with row groups of `--row_group_size`
(one small JPEG shared by all rows: decoding is not what is measured); the consumed count wraps around epochs.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time


if __package__ in (None, ""):  # `python benchmarks/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--consumed_rows", type=int, nargs=2, default=[10**2, 10**5])
    p.add_argument("--batch_size", type=int, default=32, help="pretrain_mix: image batch 8 x 4")
    p.add_argument("--bucket_batches", type=int, default=16, help="pretrain_mix")
    p.add_argument("--shuffle_buffer", type=int, default=10_000, help="pretrain_mix")
    p.add_argument("--rows", type=int, default=40_000)
    p.add_argument("--rows_per_file", type=int, default=5_000)
    p.add_argument("--row_group_size", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def make_shards(root, args) -> list[str]:
    from train.data import encode_jpeg, write_parquet_shard
    from train.shapes import IMAGE_TEMPLATES

    rng = np.random.default_rng(0)
    jpeg = encode_jpeg(rng.integers(0, 255, size=(32, 32, 3)))
    words = ["red", "blue", "green", "yellow", "ball", "image", "of", "a", "the"]
    files = []
    for start in range(0, args.rows, args.rows_per_file):
        rows = []
        for i in range(start, min(args.rows, start + args.rows_per_file)):
            extra = " ".join(rng.choice(words, size=int(rng.integers(0, 12))))
            caption = IMAGE_TEMPLATES[i % len(IMAGE_TEMPLATES)].format(c="red") + " " + extra
            rows.append({"id": f"i{i:08d}", "frames": [jpeg], "caption": caption, "source": "bench"})
        path = os.path.join(root, f"train-{start // args.rows_per_file:05d}.parquet")
        files.append(write_parquet_shard(path, rows, row_group_size=args.row_group_size))
    return files


def main():
    args = parse_args()
    from frozencaptioner.tiny import tiny_processor, tiny_tokenizer
    from train.data import IMAGE, CaptionBatchStream, ParquetReadCounter, ShardIndex

    processor = tiny_processor(tiny_tokenizer())
    with tempfile.TemporaryDirectory() as root, ParquetReadCounter() as counter:
        files = make_shards(root, args)
        index = ShardIndex.from_files(files)

        def stream(consumed_batches):
            return CaptionBatchStream(files, processor, IMAGE, args.batch_size, 1, seed=42, index=index,
                                      shuffle_buffer=args.shuffle_buffer, bucket_batches=args.bucket_batches,
                                      consumed=consumed_batches)  # fmt: skip

        def first_batch(consumed_rows):
            counter.rows = 0
            start = time.perf_counter()
            item = next(iter(stream(consumed_rows // args.batch_size)))
            return time.perf_counter() - start, counter.rows, item["meta"]["index"]

        times = {n: [] for n in args.consumed_rows}
        read = {}
        first_batch(args.consumed_rows[0])  # warm-up: imports, page cache
        for _ in range(args.repeats):  # interleaved, so load from other jobs hits both alike
            for n in args.consumed_rows:
                seconds, rows, _ = first_batch(n)
                times[n].append(seconds)
                read[n] = rows
        replay_rows = args.consumed_rows[-1]
        counter.rows = 0
        start = time.perf_counter()
        for _, index_, _ in stream(0).plan(0, 1):
            if index_ + 1 >= replay_rows // args.batch_size:
                break
        replay = time.perf_counter() - start
        block = stream(0).block_rows
    print(f"stream: batch {args.batch_size}, bucket window {args.batch_size * args.bucket_batches} rows, shuffle block "
          f"{block} rows; data {args.rows} rows in {len(files)} files, row groups of {args.row_group_size}")  # fmt: skip
    for n in args.consumed_rows:
        print(f"resume after {n:>9,} consumed rows: first batch in {statistics.median(times[n]):6.3f} s "
              f"(median of {args.repeats}), {read[n]:,} rows read from parquet")  # fmt: skip
    lo, hi = (statistics.median(times[n]) for n in args.consumed_rows)
    print(f"ratio {args.consumed_rows[-1]:,} / {args.consumed_rows[0]:,} consumed rows: x{hi / lo:.2f} (goal <= 2)")
    print(f"replaying {replay_rows:,} consumed rows through the reader (the old fast-forward's reading): "
          f"{replay:.2f} s, {counter.rows:,} rows read (x{replay / hi:.0f} the resume)")  # fmt: skip


if __name__ == "__main__":
    main()
