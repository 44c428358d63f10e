"""Shared test set-up: offline Hub, slow-test gating, tiny real FrozenCaptioner models (no downloads, no mocks)."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """`slow` tests run only with RUN_SLOW=1 or when selected with `-m slow`."""
    if os.environ.get("RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1 or pass -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny FrozenCaptioner + processor saved in the Hub remote-code format."""
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    path = tmp_path_factory.mktemp("tiny_frozencaptioner")
    build_tiny_frozencaptioner(path)
    return str(path)


@pytest.fixture
def tiny_model_and_processor():
    """A fresh tiny model (eval mode) + processor, seed 0."""
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    model, processor = build_tiny_frozencaptioner()
    return model.eval(), processor


@pytest.fixture(scope="session")
def pretrained_tiny_towers(tmp_path_factory):
    """Tiny towers that stand in for pre-trained ones, built ONCE per session (about a minute of CPU): a TimeSformer
    pre-trained on sprite clips and an OPT pre-trained on caption text without the demo world's video references
    (`frozencaptioner.pretrained_tiny`). Returns `{"vision": dir, "text": dir, "report": {...}}`."""
    from frozencaptioner.pretrained_tiny import (
        caption_corpus,
        pretrain_tiny_opt,
        pretrain_tiny_timesformer,
        vocabulary,
    )
    from train.shapes import COLOURS, DIRECTIONS, IMAGE_TEMPLATES, VIDEO_TEMPLATES, VOCABULARY

    root = tmp_path_factory.mktemp("pretrained_tiny_towers")
    held_out = [t.format(c=c, d=d) for c in COLOURS for d in DIRECTIONS for t in VIDEO_TEMPLATES]
    images = [t.format(c=c) for c in COLOURS for t in IMAGE_TEMPLATES]
    vision, text = str(root / "timesformer"), str(root / "opt")
    report = {"timesformer": pretrain_tiny_timesformer(vision)}
    corpus = caption_corpus(exclude=held_out, ball_images=images)
    report["opt"] = pretrain_tiny_opt(text, corpus, vocabulary(VOCABULARY))
    return {"vision": vision, "text": text, "report": report, "held_out_references": held_out}
