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
