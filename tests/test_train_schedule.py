"""Issue 9, point 1: under DeepSpeed the learning rate follows the DDP schedule at any world size.

accelerate 1.15 `_prepare_deepspeed` divides a `DummyScheduler(total_num_steps=...)` by the process count, and
DeepSpeed's `WarmupCosineLR` warms up logarithmically; on 8 GPUs the old setup reached LR 0 after 5K of 40K steps.
The probe below runs train.py's real `setup()` through accelerate's real `_prepare_deepspeed` with the process count
set to 1, 8 and 64, stops at `deepspeed.initialize`, builds the scheduler DeepSpeed would build from what it was
given (a client callable, or the json block), and steps it over the paper's 40K steps.
"""

import json
import os
import socket
import subprocess
import sys

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import copy, json, sys, warnings
import deepspeed, torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from train.train import make_lr_scheduler, parse_args, setup

args = parse_args(json.loads(sys.argv[1]))
captured, world = {}, {"size": 1}

class Stop(Exception):
    pass

def initialize(**kwargs):
    captured.update(kwargs)
    raise Stop

deepspeed.initialize = initialize
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None  # no collective runs: skip building the CPU comm op
Accelerator.num_processes = property(lambda self: world["size"])  # what accelerate divides by
accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])  # as train.main on CPU
assert accelerator.distributed_type == "DEEPSPEED", accelerator.distributed_type
pristine = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)

def run(scheduler, optimizer, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])  # the LR the next optimizer step uses
        scheduler.step()  # (no optimizer.step(): only the schedule is measured)
    return lrs

def fresh():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)

warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()` before")
results = {}
for size in json.loads(sys.argv[2]):
    world["size"] = size
    plugin = accelerator.state.deepspeed_plugin
    plugin.deepspeed_config.clear()
    plugin.deepspeed_config.update(copy.deepcopy(pristine))  # accelerate fills "auto" values in place
    captured.clear()
    try:
        setup(args, accelerator)
    except Stop:
        pass
    assert captured, "deepspeed.initialize was not reached"
    config, opt = captured["config_params"], fresh()
    if captured.get("lr_scheduler") is not None:  # DeepSpeed calls a client callable with its optimizer
        client = captured["lr_scheduler"]
        ds = run(client(opt) if not hasattr(client, "step") else client, opt, args.max_train_steps)
    else:  # DeepSpeed builds the json's scheduler from the config accelerate filled in
        from deepspeed.runtime.lr_schedules import WarmupCosineLR
        params = {k: v for k, v in config["scheduler"]["params"].items() if k not in ("warmup_min_lr", "warmup_max_lr")}
        ds = run(WarmupCosineLR(opt, **params), opt, args.max_train_steps)
    ddp_opt = fresh()
    ddp = run(make_lr_scheduler(ddp_opt, args), ddp_opt, args.max_train_steps)
    results[size] = {"ds": ds, "ddp": ddp, "stage": config["zero_optimization"]["stage"]}
print("RESULT" + json.dumps(results))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def paper_args(tmp_path_factory):
    from frozencaptioner.tiny import build_tiny_frozencaptioner
    from train.data import write_parquet_shard
    from train.shapes import VOCABULARY, training_rows

    root = tmp_path_factory.mktemp("schedule")
    build_tiny_frozencaptioner(root / "init", words=VOCABULARY)
    write_parquet_shard(root / "images.parquet", training_rows(8, "image"))
    return [
        "--config", os.path.join(REPO, "train", "configs", "pretrain_mix.yaml"), "--model_name_or_path",
        str(root / "init"), "--image_train_files", str(root / "images.parquet"), "--video_train_files",
        str(root / "images.parquet"), "--output_dir", str(root / "out"), "--num_frames", "4",
    ]  # fmt: skip


def test_deepspeed_schedule_is_the_ddp_schedule_at_world_sizes_1_8_64(tmp_path, paper_args):
    pytest.importorskip("deepspeed")
    env = dict(os.environ, PYTHONPATH=REPO, ACCELERATE_USE_DEEPSPEED="true",
               ACCELERATE_DEEPSPEED_CONFIG_FILE=os.path.join(REPO, "train", "configs", "ds_zero2_bf16.json"),
               ACCELERATE_MIXED_PRECISION="bf16", WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1",
               TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), HF_HOME=str(tmp_path / "hf"))  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(paper_args), "[1, 8, 64]"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    results = json.loads(proc.stdout.split("RESULT")[-1])
    for size, result in results.items():
        ds, ddp = result["ds"], result["ddp"]
        assert result["stage"] == 2 and len(ds) == len(ddp) == 40_000
        worst = max(abs(a - b) for a, b in zip(ds, ddp))
        assert worst <= 1e-9, f"world size {size}: LR differs by up to {worst:.3g} from the DDP schedule"
        # the paper's config: linear warmup over 1000 steps to 1e-3, cosine to 0 at step 40K (not at 40K / size)
        assert ds[500] == pytest.approx(5e-4) and ds[1000] == pytest.approx(1e-3) and ds[20_500] == pytest.approx(5e-4)
        assert ds[35_000] > 1e-5
