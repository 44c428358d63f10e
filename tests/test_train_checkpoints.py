"""Checkpoints (issue 10, points 1 and 3): `latest` is rank 0's choice on every rank, the model a run started from is
recorded and a resume with other towers is refused; `tower_tensors` scans a checkpoint for frozen weights (used by the
DDP, DeepSpeed and rehearsal tests)."""

import glob
import json
import os
import re
import socket
import subprocess
import sys
import types

import pytest
import torch

from train.train import COMPLETE_MARKER, check_model_record, load_checkpoint, model_record, parse_args


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tower_tensors(checkpoint) -> list[tuple[str, str]]:
    """(file, key) of every frozen-tower tensor (`vision_model.*` / `language_model.*`, LoRA excepted) stored
    anywhere in a checkpoint folder: safetensors keys and every string-keyed tensor of the pickled files."""
    from safetensors import safe_open

    pattern = re.compile(r"^(module\.)?(_orig_mod\.)?(vision_model|language_model)\.")
    found = []

    def walk(obj, name):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if (
                    isinstance(key, str)
                    and isinstance(value, torch.Tensor)
                    and pattern.match(key)
                    and "lora_" not in key
                ):
                    found.append((name, key))
                walk(value, name)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, name)

    for path in glob.glob(os.path.join(str(checkpoint), "**", "*"), recursive=True):
        name = os.path.relpath(path, checkpoint)
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                found += [(name, k) for k in f.keys() if pattern.match(k) and "lora_" not in k]
        elif path.endswith((".pt", ".bin", ".pkl")):
            walk(torch.load(path, map_location="cpu", weights_only=False), name)
    return found


RESOLVE = r"""
import json, os, sys
import torch.distributed as dist
from train.train import parse_args, resolve_checkpoint

dist.init_process_group("gloo")
out = sys.argv[1 + dist.get_rank()]  # each rank's view of "the" output folder
args = parse_args(["--output_dir", out, "--max_train_steps", "9", "--image_train_files", "x", "--p_image", "1",
                   "--model_name_or_path", "m", "--resume_from_checkpoint", "latest"])
print("CHOICE" + json.dumps(resolve_checkpoint(args)))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(root, step):
    path = root / "checkpoints" / f"step_{step:08d}"
    path.mkdir(parents=True)
    (path / COMPLETE_MARKER).touch()
    return path


def test_latest_is_resolved_on_rank0_and_broadcast(tmp_path):
    """Rank 1 sees a newer complete checkpoint (step 8) than rank 0 (step 4): both resume rank 0's step 4."""
    view0, view1 = tmp_path / "rank0_view", tmp_path / "rank1_view"
    step4 = _checkpoint(view0, 4)
    _checkpoint(view1, 4), _checkpoint(view1, 8)
    env = dict(os.environ, PYTHONPATH=REPO, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    procs = [
        subprocess.Popen([sys.executable, "-c", RESOLVE, str(view0), str(view1)], cwd=REPO,
                         env=dict(env, RANK=str(rank)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-3000:] for _, err in outputs]
    choices = [json.loads(out.split("CHOICE")[-1]) for out, _ in outputs]
    assert choices == [str(step4), str(step4)]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    root = tmp_path_factory.mktemp("records")
    build_tiny_frozencaptioner(root / "a", seed=0)
    build_tiny_frozencaptioner(root / "b", seed=1)  # same config, other weights
    return root


def _args(path):
    return parse_args(["--output_dir", "o", "--max_train_steps", "1", "--image_train_files", "x", "--p_image", "1",
                       "--model_name_or_path", str(path)])  # fmt: skip


def test_model_record_survives_a_move_and_tells_other_towers_apart(tiny_models, tmp_path):
    import shutil

    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration as Model

    a = model_record(_args(tiny_models / "a"), Model.from_pretrained(tiny_models / "a"))
    moved = shutil.copytree(tiny_models / "a", tmp_path / "moved")
    a_moved = model_record(_args(moved), Model.from_pretrained(moved))
    b = model_record(_args(tiny_models / "b"), Model.from_pretrained(tiny_models / "b"))
    assert a_moved["frozen_weights_sha256"] == a["frozen_weights_sha256"] and a_moved["source"] != a["source"]
    check_model_record(a, a_moved, "ckpt")  # moved: a warning, no error
    assert b["config_sha256"] == a["config_sha256"] and b["frozen_weights_sha256"] != a["frozen_weights_sha256"]
    with pytest.raises(ValueError, match="frozen weights differ"):
        check_model_record(a, b, "ckpt")


def test_resume_with_other_towers_is_refused_before_loading(tiny_models, tmp_path):
    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration as Model

    model_a, model_b = Model.from_pretrained(tiny_models / "a"), Model.from_pretrained(tiny_models / "b")
    trainable = {n: list(p.shape) for n, p in model_a.named_parameters() if p.requires_grad}
    checkpoint = _checkpoint(tmp_path, 4)
    saved = {"step": 4, "world_size": 1, "data": {}, "model": model_record(_args(tiny_models / "a"), model_a),
             "trainable": trainable}  # fmt: skip
    (checkpoint / "trainer_state_rank0.json").write_text(json.dumps(saved))
    accelerator = types.SimpleNamespace(process_index=0, num_processes=1, distributed_type="NO")
    now = {"model": model_record(_args(tiny_models / "b"), model_b), "trainable": trainable}
    with pytest.raises(ValueError, match="resume with the model the run started from"):
        load_checkpoint(accelerator, str(checkpoint), now)
    with pytest.raises(ValueError, match="written by 1 processes, this run has 2"):
        load_checkpoint(types.SimpleNamespace(process_index=0, num_processes=2), str(checkpoint), now)
