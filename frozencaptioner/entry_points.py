"""Console-script entry points (`[project.scripts]` in pyproject.toml).

The project ships generic top-level package names beside `frozencaptioner` (`train`, `datasets_scripts`,
`push_to_hub`; kept because the README, the issues and users' scripts name `python -m datasets_scripts.pseudolabel`,
`train/train.py`, ...). A user's own `train.py` or `datasets_scripts/` on `sys.path` before site-packages (a project
folder in `PYTHONPATH`, a `.pth` entry) would shadow them. Every console script therefore runs through `_run`, which
puts the installation root of `frozencaptioner` (its site-packages, or the checkout for an editable install) first
on `sys.path` before importing the target: `frozencaptioner` has a unique name, so its location identifies our files.
"""

import importlib
import os
import sys


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(target: str) -> int:
    """Import `module:function` from this installation and call it; a non-integer result is a success (0)."""
    if not sys.path or os.path.abspath(sys.path[0] or os.curdir) != _ROOT:
        sys.path.insert(0, _ROOT)
    module_name, function = target.split(":")
    result = getattr(importlib.import_module(module_name), function)()
    return result if isinstance(result, int) else 0


def caption() -> int:
    return _run("frozencaptioner.cli:main")


def train() -> int:
    return _run("train.train:main")


def evaluate() -> int:
    return _run("train.evaluate_captions:main")


def convert_timesformer() -> int:
    return _run("frozencaptioner.convert_timesformer:main")


def pseudolabel() -> int:
    return _run("datasets_scripts.pseudolabel:cli")


def build_video_clips() -> int:
    return _run("datasets_scripts.build_video_clips:cli")


def build_howto100m_asr() -> int:
    return _run("datasets_scripts.build_howto100m_asr:cli")


def build_laion() -> int:
    return _run("datasets_scripts.build_laion:cli")


def build_msrvtt() -> int:
    return _run("datasets_scripts.build_msrvtt:cli")


def build_msvd() -> int:
    return _run("datasets_scripts.build_msvd:cli")


def push() -> int:
    return _run("push_to_hub.__main__:main")
