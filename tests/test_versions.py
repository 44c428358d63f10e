"""The tested transformers range: one constant, equal to pyproject's specifier; an import-time warning outside it; no
cache-rename deprecation messages from our own calls on the installed version (issue 8)."""

import os
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest
import transformers

from modeling_frozencaptioner.configuration_frozencaptioner import TESTED_TRANSFORMERS


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _specifier(requirement: str, name: str) -> str:
    match = re.fullmatch(rf"{re.escape(name)}\s*([<>=!~].*)", requirement.strip())
    assert match, requirement
    return match.group(1).replace(" ", "")


def test_tested_range_is_pyprojects_specifier():
    deps = [d for d in _pyproject()["project"]["dependencies"] if re.match(r"transformers\b", d)]
    assert len(deps) == 1, deps
    assert _specifier(deps[0], "transformers") == TESTED_TRANSFORMERS
    assert transformers.__version__ in _installed_in(TESTED_TRANSFORMERS)


def _installed_in(spec):
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec)


def test_fast_moving_dependencies_have_tested_ranges():
    """Each fast-moving dependency has a lower bound and an upper bound `<` a minor release."""
    project = _pyproject()["project"]
    requirements = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    names = ["transformers", "accelerate", "datasets", "huggingface_hub", "peft", "deepspeed", "torch", "torchvision",
             "torchcodec"]  # fmt: skip
    for name in names:
        specs = [_specifier(r.split(";")[0], name) for r in requirements if re.match(rf"{name}\s*[<>=!~]", r)]
        assert specs, f"{name} is not declared with a version range"
        for spec in specs:
            assert re.search(r">=\d", spec), f"{name}{spec}: no lower bound"
            upper = re.search(r"<(\d+)\.(\d+)(?:\.0)?(?:,|$)", spec)
            assert upper and "==" not in spec, f"{name}{spec}: upper bound must be `<` a minor release"


def _import_remote_code(tmp_path, fake_version: str | None) -> subprocess.CompletedProcess:
    """Import the remote-code folder as `trust_remote_code` does, in a fresh process, with `transformers.__version__`
    patched to `fake_version`; print the warnings logged about the tested range."""
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    model_dir = tmp_path / "model"
    if not model_dir.exists():
        build_tiny_frozencaptioner(model_dir)
    # patched after the `from transformers import ...` line: that import can replace the lazy `transformers` module
    # in sys.modules, and the remote code reads the version off the module it imports
    patch = f"sys.modules['transformers'].__version__ = {fake_version!r}" if fake_version else ""
    script = textwrap.dedent(
        f"""
        import logging, sys
        sys.path = [p for p in sys.path if p not in ("", {REPO!r})]
        records = []
        class Collect(logging.Handler):
            def emit(self, record):
                records.append(record)
        from transformers import AutoConfig, AutoModel, AutoProcessor
        from transformers.utils import logging as hf_logging
        {patch}
        hf_logging.get_logger("transformers").addHandler(Collect())  # transformers' own logger tree
        logging.getLogger().addHandler(Collect())  # and anything that reaches the root logger
        AutoConfig.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        AutoProcessor.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        assert "modeling_frozencaptioner" not in sys.modules
        # one record reaches both handlers when transformers' logger propagates (it does in some environments):
        # count distinct records, not deliveries
        hits = list({id(r): r for r in records if "tested with transformers" in r.getMessage()}.values())
        for r in hits:
            print("LEVEL", r.levelname, "MSG", r.getMessage())
        print("COUNT", len(hits))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize("fake_version", ["5.22.3", "5.25.0"])  # below and above the range
def test_remote_code_warns_once_outside_the_tested_range(tmp_path, fake_version):
    result = _import_remote_code(tmp_path, fake_version)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COUNT 1" in result.stdout, result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("LEVEL"))
    assert line.startswith("LEVEL WARNING")
    assert TESTED_TRANSFORMERS in line and fake_version in line


def test_remote_code_is_silent_inside_the_tested_range(tmp_path):
    result = _import_remote_code(tmp_path, None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COUNT 0" in result.stdout, result.stdout


def test_no_cache_deprecation_messages_from_our_calls(tmp_path):
    """Forward, cached greedy/beam/sampled generate, prompted generate and a checkpointed training step in a fresh
    process, with transformers' own logging handler and Python warnings captured: no `past_key_values`/`cache`
    deprecation message may come from our calls (transformers 5.24 renamed the cache; 5.23 has no such message)."""
    script = textwrap.dedent(
        """
        import io, logging, warnings
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        hf_logging.get_logger("transformers").addHandler(handler)  # transformers' root logger (warning_once)
        hf_logging.set_verbosity_warning()
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from frozencaptioner.tiny import build_tiny_frozencaptioner

            model, processor = build_tiny_frozencaptioner()
            model.eval()
            video = torch.rand(2, 4, 3, 16, 16)
            batch = processor(text=["a red ball", "a blue ball moving left"])
            with torch.no_grad():
                out = model(pixel_values=video, **batch, use_cache=True)
                cache = getattr(out, "cache", None) if "cache" in out else out["past_key_values"]
                step = torch.tensor([[5], [6]])
                mask = torch.cat([batch["attention_mask"], torch.ones(2, 1, dtype=torch.long)], dim=1)
                model(pixel_values=video, input_ids=step, attention_mask=mask, cache=cache, use_cache=True)
            model.generate(pixel_values=video, max_new_tokens=4)
            model.generate(pixel_values=video, max_new_tokens=4, num_beams=2, num_return_sequences=2)
            model.generate(pixel_values=video, max_new_tokens=4, do_sample=True, top_p=0.9, top_k=0)
            model.train()
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            model(pixel_values=video, **batch).loss.backward()
        messages = [str(w.message) for w in caught] + stream.getvalue().splitlines()
        bad = [m for m in messages if re.search(r"past_key_values|cache_params|Use `cache`", m)]
        print("VERSION", transformers.__version__)
        print("BAD", bad)
        """
    ).replace("import io,", "import re, io,")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"VERSION {transformers.__version__}" in result.stdout
    assert "BAD []" in result.stdout, result.stdout
