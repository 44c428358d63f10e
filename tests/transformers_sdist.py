"""transformers' own `tests/test_modeling_common.py`, fetched at test time from the source distribution of the
installed transformers version on the package index (never copied into this repository), and imported as a package.

The sdist ships `tests/*.py` (top level only). `test_modeling_common.py` imports two modules from sub-folders the
sdist does not contain; minimal stand-ins are written next to it (see `_STUBS`):
  - `exporters/test_export.py`: `ExportTesterMixin` (the base class of `ModelTesterMixin`) is empty here, so
    transformers' export tests (torch.export / ONNX / ExecuTorch / OpenVINO drivers) do not run;
  - `generation/test_utils.py`: `GenerationTesterMixin` is only used in `issubclass` checks; our tester sets
    `all_generative_model_classes = ()` and our generate tests live in tests/test_generation.py.

Cache: `$FROZENCAPTIONER_CACHE`, else `$XDG_CACHE_HOME/frozencaptioner`, else `~/.cache/frozencaptioner`; the tarball
goes under `sdist/`, the extracted package under `transformers-tests/<version>-<layout>/`. A second run neither
downloads nor extracts. Any failure raises `TransformersTestsUnavailable` with pip's own output (the caller turns it
into a failing test, never a skip).
"""

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


_STUBS = {
    "exporters/test_export.py": (
        '"""Stand-in written by FrozenCaptioner\'s tests/transformers_sdist.py: the transformers sdist does not ship\n'
        'tests/exporters/, so transformers\' export tests (ExportTesterMixin) do not run against our model."""\n\n\n'
        "class ExportTesterMixin:\n"
        "    pass\n"
    ),
    "generation/test_utils.py": (
        '"""Stand-in written by FrozenCaptioner\'s tests/transformers_sdist.py: the transformers sdist does not ship\n'
        "tests/generation/, so transformers' generate tests (GenerationTesterMixin) do not run; FrozenCaptioner's\n"
        'own generate tests are in its tests/test_generation.py."""\n\n\n'
        "class GenerationTesterMixin:\n"
        "    pass\n"
    ),
}
_COMPLETE = ".complete"  # written last: a folder without it is a half-finished extraction and is redone
# Part of the extraction folder's name, so that editing `_STUBS` re-extracts instead of reusing stale stand-ins.
_LAYOUT = hashlib.sha256(repr(sorted(_STUBS.items())).encode()).hexdigest()[:8]


class TransformersTestsUnavailable(RuntimeError):
    """The transformers sdist could not be downloaded, unpacked or imported."""


def cache_root() -> Path:
    if os.environ.get("FROZENCAPTIONER_CACHE"):
        return Path(os.environ["FROZENCAPTIONER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "frozencaptioner"


def package_name(version: str) -> str:
    """An importable name per version, e.g. `transformers_5_24_0_tests` (never `tests`, which is too generic)."""
    return "transformers_" + "".join(c if c.isalnum() else "_" for c in version) + "_tests"


def download_sdist(version: str, dest: Path) -> Path:
    """`pip download --no-binary :all: --no-deps transformers==<version>` into `dest` (kept between runs)."""
    tarball = dest / f"transformers-{version}.tar.gz"
    if tarball.is_file():
        return tarball
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        base = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--retries", "2"]
        base += ["--disable-pip-version-check", "--dest", tmp, f"transformers=={version}"]
        # pip prepares the sdist's metadata before saving it; without build isolation that reuses this environment's
        # setuptools (~15 s) instead of installing one into a throw-away environment (~80 s). If that step fails
        # (the download itself worked), retry with isolation.
        attempts = [base + ["--no-build-isolation"], base] if importlib.util.find_spec("setuptools") else [base]
        errors = []
        for cmd in attempts:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = list(Path(tmp).glob(f"transformers-{version}.tar.gz"))
            if proc.returncode == 0 and found:
                os.replace(found[0], tarball)  # atomic: a concurrent run sees no tarball or a whole one
                return tarball
            errors.append(f"$ {' '.join(cmd)}\n(exit {proc.returncode})\n{(proc.stdout + proc.stderr)[-3000:]}")
            if "Preparing metadata" not in proc.stdout + proc.stderr:
                break  # not a build problem (no such release, no network): a second try would fail the same way
    raise TransformersTestsUnavailable(
        f"could not download the transformers=={version} source distribution from the package index, which the "
        "test of transformers' own test_modeling_common.py needs (it is fetched at test time, never vendored). "
        "pip said:\n" + "\n".join(errors)
    )


def extract_tests(tarball: Path, version: str, dest: Path) -> Path:
    """Unpack the sdist's top-level `tests/*.py` into `dest/<package_name>/` plus the two stand-in modules."""
    target = dest / package_name(version)
    if (target / _COMPLETE).is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    prefix = f"transformers-{version}/tests/"
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        with tarfile.open(tarball) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and m.name.startswith(prefix)
                and "/" not in m.name[len(prefix) :]
                and m.name.endswith(".py")
            ]
            if not any(m.name == prefix + "test_modeling_common.py" for m in members):
                raise TransformersTestsUnavailable(f"{tarball} has no {prefix}test_modeling_common.py")
            for m in members:
                (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        (tmp / "__init__.py").write_text("")
        for rel, text in _STUBS.items():
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).parent.joinpath("__init__.py").write_text("")
            (tmp / rel).write_text(text)
        (tmp / _COMPLETE).write_text(f"transformers {version} sdist tests, extracted from {tarball.name}\n")
        if target.exists():  # an earlier half-finished extraction
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # a concurrent run finished first: use its copy
            if not (target / _COMPLETE).is_file():
                raise
    except (OSError, EOFError, tarfile.TarError) as e:
        if not isinstance(e, OSError):
            tarball.unlink(missing_ok=True)  # a damaged download: the next run fetches it again
        raise TransformersTestsUnavailable(f"could not unpack the tests of {tarball}: {e!r}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_test_modeling_common(version: str | None = None):
    """Import `test_modeling_common` of transformers `version` (default: the installed one), fetching it if needed."""
    import transformers

    version = version or transformers.__version__
    root = cache_root()
    tarball = download_sdist(version, root / "sdist")
    target = extract_tests(tarball, version, root / "transformers-tests" / f"{version}-{_LAYOUT}")
    if str(target.parent) not in sys.path:
        sys.path.insert(0, str(target.parent))
    try:
        return importlib.import_module(f"{package_name(version)}.test_modeling_common")
    except ImportError as e:  # e.g. `parameterized` missing: it is in the `test` extra
        raise TransformersTestsUnavailable(
            f"transformers {version}'s test_modeling_common.py (from {target}) does not import: {e!r}; "
            "install the test extra: pip install -e '.[test]'"
        ) from e
