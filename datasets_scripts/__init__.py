"""Data pipeline for FrozenCaptioner: pseudolabeling unlabeled video (METHOD.md §1) and dataset builders.

Entry points (each `python -m datasets_scripts.<name> --help`):

* `pseudolabel`: videos -> center-frame captions per 8 s clip (parquet shards + dataset card), crash-safe, multi-GPU.
* `build_video_clips`: pseudolabels -> training clips (T JPEG frames per clip).
* `build_howto100m_asr`: HowTo100M ASR baseline (ASR segments joined into ~8 s clips).
* `build_laion`: LAION-style image-text pairs (English-only, streaming, split by node).
* `build_msrvtt`, `build_msvd`: captioning benchmarks (all references kept).

Shared: `video_io` (timestamp-based seeking decode; decord / PyAV / torchcodec), `synthetic` (test videos).
"""
