"""Data pipeline for FrozenCaptioner: pseudolabeling unlabeled video (METHOD.md §1) and dataset builders.

Entry points (each `python -m datasets_scripts.<name> --help`):

* `pseudolabel`: videos -> centre-frame (or keyframe) captions per 8 s clip (parquet shards + dataset card),
  crash-safe, multi-GPU, many independent jobs on one output folder.
* `build_video_clips`: pseudolabels -> training clips (T JPEG frames per clip).
* `build_howto100m_asr`: HowTo100M ASR baseline (ASR segments joined into ~8 s clips).
* `build_laion`: LAION-style image-text pairs (English-only, one input file at a time).
* `build_msrvtt`, `build_msvd`: captioning benchmarks (all references kept).

The first three builders stream their input shard by shard and resume per input shard
(`training_rows.InputShardBuild`).

Shared: `video_io` (timestamp-based seeking decode; decord / PyAV / torchcodec), `synthetic` (test videos).
"""
