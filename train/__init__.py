"""Training, evaluation and the embedded demo for FrozenCaptioner (`accelerate launch train/train.py ...`).

Model code never imports from here (open_flamingo's split of `src/` and `train/`).
"""
