"""train.py in process (issue 9): AMP training from fp16-stored towers, device-to-host transfers per logging step."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from train.shapes import VOCABULARY, training_rows


TRAIN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "train.py")


@pytest.fixture
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def fp16_towers(tmp_path_factory):
    """A tiny OPT saved in fp16 (as facebook/opt-1.3b is stored) and a tiny TimeSformer, each with its processor."""
    from transformers import OPTForCausalLM, TimesformerModel

    from frozencaptioner.tiny import build_tiny_frozencaptioner, tiny_config, tiny_processor, tiny_tokenizer
    from train.data import write_parquet_shard

    root = tmp_path_factory.mktemp("fp16_towers")
    tokenizer = tiny_tokenizer(VOCABULARY)
    config = tiny_config(vocab_size=len(tokenizer))
    torch.manual_seed(0)
    OPTForCausalLM(config.text_config).half().save_pretrained(root / "opt")
    tokenizer.save_pretrained(root / "opt")
    TimesformerModel(config.vision_config).save_pretrained(root / "timesformer")
    tiny_processor(tokenizer).video_processor.save_pretrained(root / "timesformer")
    build_tiny_frozencaptioner(root / "fp32_model", words=VOCABULARY)
    write_parquet_shard(root / "images.parquet", training_rows(24, "image", seed=1))
    write_parquet_shard(root / "videos.parquet", training_rows(8, "video", seed=2, num_frames=4))
    return root


def _argv(root, out, *extra):
    return [
        "--vision_model_name_or_path", str(root / "timesformer"), "--text_model_name_or_path", str(root / "opt"),
        "--adapter_layers", "2", "3", "--image_train_files", str(root / "images.parquet"), "--video_train_files",
        str(root / "videos.parquet"), "--p_image", "0.5", "--image_batch_size", "4", "--video_batch_size", "2",
        "--dataloader_num_workers", "0", "--shuffle_buffer", "8", "--bucket_batches", "2", "--report_to", "none",
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_setup_from_fp16_towers_gives_fp32_trainables_that_grad_scaler_steps(
    fp16_towers, tmp_path, fresh_accelerate_state
):
    from accelerate import Accelerator

    from train.data import IMAGE, CaptionBatchStream
    from train.train import parse_args, setup

    args = parse_args(_argv(fp16_towers, tmp_path / "out", "--max_train_steps", "1"))
    run = setup(args, Accelerator(cpu=True))
    assert run.trainable and {p.dtype for p in run.trainable} == {torch.float32}
    assert {p.dtype for p in run.unwrapped.parameters()} == {torch.float32}  # one dtype (issue 9, point 2)
    stream = CaptionBatchStream([fp16_towers / "images.parquet"], run.processor, IMAGE, 4, 1, shuffle_buffer=0)
    batch = next(iter(stream))["batch"]
    scaler = torch.amp.GradScaler("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = run.model(**batch).loss
    scaler.scale(loss).backward()
    scaler.unscale_(run.optimizer)  # raises "Attempting to unscale FP16 gradients" on fp16 trainables
    scaler.step(run.optimizer)
    scaler.update()
    assert torch.isfinite(loss)


class HostTransfers(TorchFunctionMode):
    """Counts tensor -> Python/host conversions called directly from train/train.py, by function name."""

    NAMES = {"item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__"}

    def __init__(self):
        super().__init__()
        self.calls = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.NAMES:
            caller = sys._getframe(1)
            if os.path.samefile(caller.f_code.co_filename, TRAIN_PY):
                self.calls[caller.f_code.co_name] = self.calls.get(caller.f_code.co_name, 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("accumulation", [1, 4])
def test_losses_go_to_the_host_once_per_logging_step(fp16_towers, tmp_path, fresh_accelerate_state, accumulation):
    """6 steps, logging every 3: the training loop moves losses to the host twice, however many micro-batches."""
    from train.train import main

    out = tmp_path / "out"
    argv = _argv(fp16_towers, out, "--model_name_or_path", str(fp16_towers / "fp32_model"), "--max_train_steps", "6", "--logging_steps", "3", "--gradient_accumulation_steps",
                 str(accumulation))  # fmt: skip
    with HostTransfers() as transfers:
        main(argv)
    assert transfers.calls.get("flush") == 2  # the logging steps 3 and 6
    assert transfers.calls.get("main", 0) <= 2  # after the loop: the run summary's totals
    in_loop = {k: v for k, v in transfers.calls.items() if k not in ("flush", "main", "model_record", "gate_values")}
    assert in_loop == {}, in_loop
    lines = [json.loads(line) for line in open(out / "logs" / "train_rank0.jsonl")]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(line["loss"], float) and line["lr"] >= 0 for line in lines)
    assert all(len(line["modalities"]) == accumulation and len(set(line["modalities"])) == 1 for line in lines)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU AMP check is the setup test above)")
def test_amp_fp16_cuda_training_from_fp16_towers(fp16_towers, tmp_path):
    """DDP path with `--mixed_precision fp16` on one GPU from fp16-stored towers: fp32 trainables, finite losses."""
    import subprocess

    out = tmp_path / "amp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "fp16",
           TRAIN_PY, *_argv(fp16_towers, out, "--max_train_steps", "4", "--logging_steps", "2")]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(TRAIN_PY)), HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    info = json.loads((out / "logs" / "run_info.json").read_text())
    assert info["mixed_precision"] == "fp16" and info["model_dtype"] == "torch.float32"
    losses = [json.loads(line)["loss"] for line in open(out / "logs" / "train_rank0.jsonl")]
    assert len(losses) == 4 and all(np.isfinite(losses))
