"""Every console script, `python -m` module and `python <file>.py` script answers `--help` from a foreign working
directory, with PYTHONPATH unset and set to the checkout (issue 8: `PYTHONPATH=<repo> python train/demo.py` died
with "'train' is not a package": train/train.py shadowed the `train` package). Console scripts also survive a user's
own `train.py` / `datasets_scripts/` / `push_to_hub.py` first on PYTHONPATH."""

import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["frozencaptioner", "datasets_scripts", "train", "push_to_hub"]
SCRIPT_DIRS = ["train", "benchmarks"]  # run as `python <file>.py` (README, issues)


def _has_main(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return re.search(r"^if __name__ == .__main__.:", f.read(), re.M) is not None


def console_scripts() -> list[str]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return sorted(tomllib.load(f)["project"]["scripts"])


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(REPO, package))):
            path = os.path.join(REPO, package, name)
            if name == "__main__.py":
                found.append(package)
            elif name.endswith(".py") and _has_main(path):
                found.append(f"{package}.{name[:-3]}")
    return found


def script_files() -> list[str]:
    return [
        os.path.join(REPO, folder, name)
        for folder in SCRIPT_DIRS
        for name in sorted(os.listdir(os.path.join(REPO, folder)))
        if name.endswith(".py") and _has_main(os.path.join(REPO, folder, name))
    ]


def _env(pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


def _run_all(commands: list[tuple[str, list[str], str | None]], cwd) -> list[str]:
    """Run `(label, argv, PYTHONPATH)` commands, four at a time; the labels that did not print a usage and exit 0."""

    def run(item):
        label, argv, pythonpath = item
        result = subprocess.run(argv, cwd=cwd, env=_env(pythonpath), capture_output=True, text=True, timeout=300)
        ok = result.returncode == 0 and "usage:" in result.stdout.lower()
        return None if ok else f"{label} (PYTHONPATH={pythonpath}): exit {result.returncode}\n{result.stderr[-1500:]}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [failure for failure in pool.map(run, commands) if failure]


@pytest.fixture
def foreign_cwd(tmp_path):
    """A working directory outside the checkout that holds a user's own `train.py`, `datasets_scripts/` and
    `push_to_hub.py` (each raises if imported)."""
    (tmp_path / "train.py").write_text("raise SystemExit('the user train.py was imported')\n")
    (tmp_path / "push_to_hub.py").write_text("raise SystemExit('the user push_to_hub.py was imported')\n")
    (tmp_path / "datasets_scripts").mkdir()
    (tmp_path / "datasets_scripts" / "__init__.py").write_text("raise SystemExit('the user package was imported')\n")
    (tmp_path / "work").mkdir()
    return tmp_path


def test_discovery_finds_the_documented_entry_points():
    assert {"frozencaptioner", "frozencaptioner-pseudolabel", "frozencaptioner-train", "frozencaptioner-push"} <= set(
        console_scripts()
    )
    assert {"datasets_scripts.pseudolabel", "push_to_hub", "train.train", "frozencaptioner.cli"} <= set(modules())
    names = {os.path.relpath(p, REPO) for p in script_files()}
    assert {"train/train.py", "train/demo.py", "train/evaluate_captions.py", "benchmarks/bench_decode.py"} <= names


@pytest.mark.slow  # ~80 s each on 2 cores (one torch + transformers import per command)
def test_console_scripts_help_even_with_a_shadowing_user_folder(foreign_cwd):
    bindir = os.path.dirname(sys.executable)  # the environment the tests run in (the project is installed there)
    missing = [name for name in console_scripts() if not os.path.exists(os.path.join(bindir, name))]
    assert not missing, f"console scripts not installed in {bindir}: {missing} (pip install -e .)"
    commands = [
        (name, [os.path.join(bindir, name), "--help"], pythonpath)
        for name in console_scripts()
        for pythonpath in (None, REPO, str(foreign_cwd))
    ]
    failures = _run_all(commands, cwd=foreign_cwd / "work")
    assert not failures, "\n".join(failures)


@pytest.mark.slow  # ~80 s each on 2 cores (one torch + transformers import per command)
def test_python_m_modules_help(foreign_cwd):
    commands = [
        (module, [sys.executable, "-m", module, "--help"], pythonpath)
        for module in modules()
        for pythonpath in (None, REPO)
    ]
    failures = _run_all(commands, cwd=foreign_cwd / "work")
    assert not failures, "\n".join(failures)


@pytest.mark.slow  # ~80 s each on 2 cores (one torch + transformers import per command)
def test_python_file_scripts_help(foreign_cwd):
    commands = [
        (os.path.relpath(path, REPO), [sys.executable, path, "--help"], pythonpath)
        for path in script_files()
        for pythonpath in (None, REPO)
    ]
    failures = _run_all(commands, cwd=foreign_cwd / "work")
    assert not failures, "\n".join(failures)


def test_representative_entry_points_help(foreign_cwd):
    """Default-suite sample of the slow matrices above: a console script with a shadowing folder first on PYTHONPATH,
    and the file script whose folder shadows its package (`train/train.py`) with PYTHONPATH set to the checkout."""
    bindir = os.path.dirname(sys.executable)
    commands = [
        ("frozencaptioner-train", [os.path.join(bindir, "frozencaptioner-train"), "--help"], str(foreign_cwd)),
        ("train/train.py", [sys.executable, os.path.join(REPO, "train", "train.py"), "--help"], REPO),
    ]
    failures = _run_all(commands, cwd=foreign_cwd / "work")
    assert not failures, "\n".join(failures)
