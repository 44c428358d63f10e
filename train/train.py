"""Pre-train or fine-tune FrozenCaptioner adapters with `accelerate launch` (DDP or DeepSpeed ZeRO-2).

    accelerate launch --config_file train/configs/accelerate_deepspeed_zero2_fp16.yaml train/train.py \
        --config train/configs/pretrain_mix.yaml
    # CPU, 2 processes over gloo (tests, demo):
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train/train.py --config train/configs/demo.yaml

Structure follows accelerate's `examples/by_feature/deepspeed_with_config_support.py` and `complete_nlp_example.py`:
`parse_args()` -> `main()`; `setup()` builds the model, optimizer and schedule and runs the one
`accelerator.prepare(model, optimizer, lr_scheduler)`; `accelerator.accumulate`; `save_state` / `load_state` for
resume; DeepSpeed's own optimizer (`DummyOptim`) when the DeepSpeed json defines one. Differences, on purpose:

* The data loaders are NOT passed to `accelerator.prepare`: every (rank, DataLoader worker) reads only its own rows
  of the parquet shards (`train/data.py`, planned from the footers, which the main process reads once and
  broadcasts) and every rank draws its own modality each step (the paper: image batch with p=0.95, video batch with
  p=0.05, independently per GPU). accelerate would otherwise shard or dispatch batches from rank 0.
* One learning-rate schedule (transformers' `get_scheduler`) for DDP and DeepSpeed: under DeepSpeed it is handed
  over as `DummyScheduler(lr_scheduler_callable=...)`. accelerate divides a DeepSpeed json scheduler's
  `total_num_steps` by the process count and DeepSpeed's `WarmupCosineLR` warms up logarithmically and shifts the
  cosine by one step, so a json `scheduler` block is refused.
* Checkpoints hold what training changes: the trainable (adapter, LoRA) weights, optimizer, scheduler, RNG and the
  data position -- not the frozen towers (DeepSpeed: `exclude_frozen_parameters`; DDP: a save/load hook). They record
  the model the run started from (paths + config and weights fingerprints) and the data files' fingerprint, and a
  resume with other towers or other data is refused.
* Training from cached features: a stream whose shards have a `features` column (written by
  `datasets_scripts/cache_features.py`; detected from the schema, no flag) feeds the cached frozen-tower outputs to
  the model instead of pixels (no JPEG decoding, no tower forward), through the same split, shuffle and resume; a
  cache made by another tower, preprocessing or frame count than this run's is refused.
* Per-rank training state (modality generator, batches consumed per stream, corrupt-row counts) is written by every
  process into the checkpoint (`trainer_state_rank{r}.json`); accelerate saves custom objects from the main process only.

Run hyperparameters are the flags below; `--config <yaml>` sets their defaults (flags given on the command line win).
Distributed settings (DDP vs DeepSpeed, precision, ZeRO stage) live in the accelerate yaml / DeepSpeed json.
"""

import argparse
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import sys
import time


if __package__ in (None, ""):  # `python train/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch
import yaml
from accelerate import Accelerator, DistributedType
from accelerate.utils import DummyOptim, DummyScheduler, InitProcessGroupKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration, FrozenCaptionerProcessor
from train.data import (
    IMAGE,
    MODALITIES,
    VIDEO,
    CaptionBatchStream,
    MixedModalityLoader,
    ModalitySampler,
    ShardIndex,
    check_data_state,
)
from train.feature_cache import check_cache_record, stable_config, strided_sample


logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step_"
COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
TRAINABLE_WEIGHTS = "model.safetensors"  # the name accelerate gives the (here: trainable-only) model weights


# ----------------------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", default=None, help="YAML run config; its keys are these flags' names (dashes or underscores)"
    )
    g = p.add_argument_group("model")
    g.add_argument("--model_name_or_path", default=None, help="a FrozenCaptioner checkpoint (Hub-format folder)")
    g.add_argument(
        "--vision_model_name_or_path", default=None, help="TimeSformer checkpoint for a fresh model (step 0)"
    )
    g.add_argument("--text_model_name_or_path", default=None, help="OPT checkpoint for a fresh model (step 0)")
    g.add_argument(
        "--adapter_layers",
        type=int,
        nargs="+",
        default=None,
        help="decoder layers with an adapter (paper: 12 14 16 18 20 22)",
    )
    g.add_argument("--gate_type", choices=["vector", "scalar"], default="vector")
    g.add_argument(
        "--gate_init",
        type=float,
        default=1.0,
        help="pre-tanh gate init (1.0 -> tanh(1)=0.76, the paper; 0.0 = Flamingo)",
    )
    g.add_argument("--cross_attention", choices=["separable", "full"], default="separable")
    g.add_argument("--num_frames", type=int, default=None, help="frames per video clip (default: the processor's)")
    g.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="crop size (pre-train 224, fine-tune 320); default: the processor's",
    )
    g.add_argument("--gradient_checkpointing", action=argparse.BooleanOptionalAction, default=False)
    g = p.add_argument_group("data")
    g.add_argument(
        "--image_train_files",
        nargs="+",
        default=None,
        help="parquet shards (globs) of image-text rows (LAION), or a feature cache of them (see --help)",
    )
    g.add_argument(
        "--video_train_files",
        nargs="+",
        default=None,
        help="parquet shards (globs) of video-text rows (HowTo100M), or a feature cache of them",
    )
    g.add_argument(
        "--p_image", type=float, default=0.95, help="probability that a step draws an image batch (paper: 0.95)"
    )
    g.add_argument("--modality_sampling", choices=["independent", "synchronized"], default="independent",
                   help="independent: each rank draws its own modality (paper); synchronized: all ranks draw the same")  # fmt: skip
    g.add_argument("--modality_draw", choices=["per_step", "per_micro_batch"], default="per_step",
                   help="per_step: one draw per optimizer step, all its accumulated micro-batches of that modality "
                        "(the paper: each GPU draws per step); per_micro_batch (ours): one draw per micro-batch")  # fmt: skip
    g.add_argument("--modality_sequence", nargs="+", choices=list(MODALITIES), default=None,
                   help="(ours) repeat this modality per micro-batch instead of drawing (rehearsals, benchmarks)")  # fmt: skip
    g.add_argument("--video_batch_size", type=int, default=16, help="video clips per micro-batch per process")
    g.add_argument(
        "--image_batch_size",
        type=int,
        default=None,
        help="images per micro-batch per process (default: ratio x video)",
    )
    g.add_argument(
        "--image_video_batch_ratio", type=int, default=8, help="image batch = ratio x video batch (paper: ~8)"
    )
    g.add_argument("--shuffle_buffer", type=int, default=2000,
                   help="rows per shuffle block, per DataLoader worker and stream (0: no shuffling within a part)")  # fmt: skip
    g.add_argument("--shuffle_buffer_mb", type=float, default=None,
                   help="cap each worker's shuffle block at this many MiB (from the footers' mean row size)")  # fmt: skip
    g.add_argument("--bucket_batches", type=int, default=16, help="length-bucketing window in batches (<=1: off)")
    g.add_argument("--dataloader_num_workers", type=int, default=2, help="DataLoader workers per stream")
    g = p.add_argument_group("optimisation")
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument(
        "--adam_beta2", type=float, default=0.999, help="paper: 0.999 generalises better; 0.95 is more stable"
    )
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=0.0)
    g.add_argument(
        "--lr_scheduler_type", default="cosine", help="transformers scheduler name (DDP and DeepSpeed alike)"
    )
    g.add_argument("--num_warmup_steps", type=int, default=0)
    g.add_argument("--max_train_steps", type=int, required=False, default=None, help="optimizer steps")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="clipping (0 = off)")
    g = p.add_argument_group("run")
    g.add_argument("--output_dir", default=None)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--checkpointing_steps", type=int, default=0, help="save_state every N optimizer steps (0 = never)")
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder or 'latest'")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--report_to", default="tensorboard", help="accelerate tracker ('tensorboard', 'all', 'none')")
    g.add_argument("--stop_after_steps", type=int, default=None,
                   help="leave after this many steps with no final save, like a preempted job (resume tests)")  # fmt: skip
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        with open(pre.config) as f:
            config = yaml.safe_load(f) or {}
        known = {action.dest for action in parser._actions}
        config = {key.replace("-", "_"): value for key, value in config.items()}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{pre.config}: unknown keys {unknown}")
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
    if args.output_dir is None or args.max_train_steps is None:
        parser.error("--output_dir and --max_train_steps are required (on the command line or in --config)")
    if not (args.image_train_files or args.video_train_files):
        parser.error("give --image_train_files and/or --video_train_files")
    if args.model_name_or_path is None and not (args.vision_model_name_or_path and args.text_model_name_or_path):
        parser.error("give --model_name_or_path, or --vision_model_name_or_path and --text_model_name_or_path")
    if args.image_batch_size is None:
        args.image_batch_size = args.image_video_batch_ratio * args.video_batch_size
    drawn = needed_modalities(args)
    if IMAGE in drawn and args.image_train_files is None:
        parser.error("image batches (--p_image > 0 or --modality_sequence) need --image_train_files")
    if VIDEO in drawn and args.video_train_files is None:
        parser.error("video batches (--p_image < 1 or --modality_sequence) need --video_train_files")
    return args


def needed_modalities(args) -> set[str]:
    """The streams a run reads: those of `--modality_sequence`, else those `--p_image` can draw."""
    if args.modality_sequence:
        return set(args.modality_sequence)
    return {m for m, p in ((IMAGE, args.p_image), (VIDEO, 1.0 - args.p_image)) if p > 0}


def expand_files(patterns) -> list[str]:
    files = []
    for pattern in patterns or []:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no data files match {pattern!r}")
        files.extend(matches)
    return files


# ----------------------------------------------------------------------------------------------- model
def load_model_and_processor(args, dtype: torch.dtype | None = None):
    """The model the run starts from and its processor. `dtype=None`: every parameter float32 (DDP; AMP keeps fp32
    master weights)."""
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    if args.model_name_or_path:
        model = FrozenCaptionerForConditionalGeneration.from_pretrained(args.model_name_or_path, **load_kwargs)
        processor = FrozenCaptionerProcessor.from_pretrained(args.model_name_or_path)
    else:
        model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(
            args.vision_model_name_or_path,
            args.text_model_name_or_path,
            adapter_layers=args.adapter_layers,
            gate_type=args.gate_type,
            gate_init=args.gate_init,
            cross_attention=args.cross_attention,
            **load_kwargs,
        )
        # the tower's own normalisation and size (TimeSformer, timm, CLIP, SigLIP), not VideoMAE's defaults
        processor = FrozenCaptionerProcessor.from_pretrained_backbones(
            args.vision_model_name_or_path,
            args.text_model_name_or_path,
            num_frames=args.num_frames or model.config.num_frames,
        )
    if args.num_frames:
        processor.num_frames = args.num_frames
    if processor.num_frames > model.config.num_frames:
        raise ValueError(f"num_frames {processor.num_frames} > the vision tower's {model.config.num_frames}")
    if args.image_size:  # the model interpolates position embeddings; the processor crops at this size
        processor.set_image_size(args.image_size)
    return model, processor


def trainable_param_groups(model, weight_decay: float):
    """Only `requires_grad` parameters (ZeRO-2 has open bugs with frozen params in the optimizer); no decay on
    biases, LayerNorms, gates and the frame-wise towers' time embeddings (a per-frame offset, like a bias)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name.endswith(("_gate", "time_embeddings")) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def gate_names(model) -> list[str]:
    names = []
    for layer in model.gated_cross_attn_layers:
        names += [f"gates/attn_layer{layer.layer_idx}", f"gates/ffn_layer{layer.layer_idx}"]
    return names


def gate_tensor(model) -> torch.Tensor:
    """Mean tanh(gate) of every adapter (0 = the branch is off), on the model's device: `(2 * num_adapters,)`."""
    values = []
    for layer in model.gated_cross_attn_layers:
        values += [layer.attn_gate.detach().float().tanh().mean(), layer.ffn_gate.detach().float().tanh().mean()]
    return torch.stack(values)


def gate_values(model) -> dict:
    return dict(zip(gate_names(model), gate_tensor(model).tolist()))


def model_record(args, model) -> dict:
    """Where the run's model came from, with fingerprints of its config and of its frozen weights. The weights
    fingerprint hashes name, shape and ~1K evenly strided values (as float32) of every frozen tensor: different
    towers (other checkpoint, other seed, a fine-tuned variant) differ in practically every value, and it costs
    milliseconds at the paper's 1.78B parameters, where hashing all 7 GB would take ~10 s per start."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.requires_grad:
            continue
        sample = strided_sample(param, 1024).float().numpy()
        digest.update(f"{name}{tuple(param.shape)}".encode())
        digest.update(sample.tobytes())
    config = json.dumps(stable_config(model.config.to_dict()), sort_keys=True)
    return {
        "source": {
            "model_name_or_path": args.model_name_or_path,
            "vision_model_name_or_path": None if args.model_name_or_path else args.vision_model_name_or_path,
            "text_model_name_or_path": None if args.model_name_or_path else args.text_model_name_or_path,
        },
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "frozen_weights_sha256": digest.hexdigest(),
    }


def check_model_record(saved: dict, now: dict, checkpoint: str):
    """Resuming restores only the trainable weights: the frozen towers must be the ones the run started from."""
    changed = [key for key in ("config_sha256", "frozen_weights_sha256") if saved.get(key) != now[key]]
    if changed:
        raise ValueError(
            f"{checkpoint} was trained from {saved.get('source')}, this run loads {now['source']}, and their "
            f"{' and '.join(k.split('_sha256')[0].replace('_', ' ') for k in changed)} differ. The checkpoint holds "
            "only the trainable weights; resume with the model the run started from"
        )
    if saved.get("source") != now["source"]:
        logger.warning(
            "%s: the model moved from %s to %s (same weights)", checkpoint, saved.get("source"), now["source"]
        )


# ----------------------------------------------------------------------------------------------- lr schedule
def make_lr_scheduler(optimizer, args):
    """The schedule of both backends (stepped once per optimizer step; LR of step k = its value after k-1 steps)."""
    return get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.num_warmup_steps,
        num_training_steps=args.max_train_steps,
    )


def build_optimizer_and_scheduler(model, args, ds_config: dict | None):
    """AdamW over the trainable parameters (`DummyOptim` when the DeepSpeed json defines the optimizer) and the
    transformers schedule; under DeepSpeed the schedule goes in as `DummyScheduler(lr_scheduler_callable=...)`, which
    accelerate passes to `deepspeed.initialize` as is (no division by the process count)."""
    groups = trainable_param_groups(model, args.weight_decay)
    ds_config = ds_config or {}
    if "scheduler" in ds_config:
        raise ValueError(
            "remove the `scheduler` block from the DeepSpeed json: train.py runs the same transformers schedule "
            f"(--lr_scheduler_type {args.lr_scheduler_type}, --num_warmup_steps, --max_train_steps) under DDP and "
            "DeepSpeed (accelerate divides a json scheduler's total_num_steps by the process count, and DeepSpeed's "
            "WarmupCosineLR warms up logarithmically and shifts the cosine by one step)"
        )
    optimizer_cls = DummyOptim if "optimizer" in ds_config else torch.optim.AdamW
    optimizer = optimizer_cls(
        groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
    )
    if isinstance(optimizer, DummyOptim):
        lr_scheduler = DummyScheduler(optimizer, lr_scheduler_callable=lambda opt: make_lr_scheduler(opt, args))
    else:
        lr_scheduler = make_lr_scheduler(optimizer, args)
    return optimizer, lr_scheduler


# ----------------------------------------------------------------------------------------------- checkpoints
def list_checkpoints(output_dir) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = re.fullmatch(CHECKPOINT_PREFIX + r"(\d+)", name)
        if match and os.path.exists(os.path.join(root, name, COMPLETE_MARKER)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return [path for _, path in sorted(found)]


def broadcast_from_rank0(value):
    """Rank 0's `value` (any picklable object) on every rank; `value` itself when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def resolve_checkpoint(args) -> str | None:
    """The checkpoint to resume from. `latest` is resolved on the main process only and broadcast, so every rank
    resumes the same step even when the ranks' views of a shared filesystem differ (a checkpoint that rank 0 does not
    see yet is not used); each rank then checks that it sees that checkpoint complete."""
    if not args.resume_from_checkpoint:
        return None
    import torch.distributed as dist

    choice = None
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if rank == 0:
        if args.resume_from_checkpoint == "latest":
            checkpoints = list_checkpoints(args.output_dir)
            choice = checkpoints[-1] if checkpoints else None  # nothing saved yet: start from scratch
        else:
            choice = args.resume_from_checkpoint
    choice = broadcast_from_rank0(choice)
    if choice is not None and not os.path.exists(os.path.join(choice, COMPLETE_MARKER)):
        raise FileNotFoundError(f"rank {rank}: {choice} is not a complete checkpoint (no {COMPLETE_MARKER})")
    return choice


FROZEN_TOWERS = ("vision_model.", "language_model.")


@contextlib.contextmanager
def trainable_state_dict(model):
    """While active, `model.state_dict()` holds only what training changes: the parameters that require grad
    (adapters, LoRA) and the buffers outside the frozen towers. Both backends save the model through
    `state_dict()` (DDP: accelerate's weights; DeepSpeed: `module_state_dict`, whose `exclude_frozen_parameters`
    misses aliases of frozen weights such as OPT's `lm_head.weight`, tied to the 206 MB input embedding)."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    keep |= {n for n, _ in model.named_buffers() if not n.startswith(FROZEN_TOWERS)}

    def hook(module, state_dict, prefix, local_metadata):
        for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix) :] not in keep]:
            del state_dict[key]

    handle = model.register_state_dict_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def register_trainable_only_load_hook(accelerator, model):
    """Non-DeepSpeed resume: accelerate would load its model file strictly into the whole model; this hook takes the
    model out of accelerate's list and loads the trainable weights itself, checking they are exactly this model's."""
    from safetensors.torch import load_file

    unwrapped = accelerator.unwrap_model(model)
    trainable = {name for name, param in unwrapped.named_parameters() if param.requires_grad}

    def plain(key: str) -> str:  # accelerate hands over unwrapped keys today; accept DDP's `module.` prefix too
        return key[len("module.") :] if key.startswith("module.") else key

    def load_hook(models, input_dir):
        while models:
            target = accelerator.unwrap_model(models.pop())
            state_dict = {plain(k): v for k, v in load_file(os.path.join(input_dir, TRAINABLE_WEIGHTS)).items()}
            missing, unexpected = trainable - set(state_dict), set(state_dict) - set(target.state_dict())
            if missing or unexpected:
                raise ValueError(
                    f"{input_dir}: trainable weights do not match this model: missing {sorted(missing)[:5]}, "
                    f"unexpected {sorted(unexpected)[:5]} (other adapters or LoRA settings?)"
                )
            target.load_state_dict(state_dict, strict=False)  # CPU tensors; copied into the parameters

    accelerator.register_load_state_pre_hook(load_hook)


def directory_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def save_checkpoint(accelerator, args, step: int, loader: MixedModalityLoader, run_state: dict, model) -> str:
    """`model`: the unwrapped model (its frozen towers are left out of every file)."""
    path = os.path.join(args.output_dir, "checkpoints", f"{CHECKPOINT_PREFIX}{step:08d}")
    kwargs = {"exclude_frozen_parameters": True} if accelerator.distributed_type == DistributedType.DEEPSPEED else {}
    with trainable_state_dict(model):
        accelerator.save_state(path, **kwargs)  # trainable weights, optimizer, scheduler, GradScaler, RNG per process
    with open(os.path.join(path, f"trainer_state_rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"step": step, "world_size": accelerator.num_processes, "data": loader.state_dict(), **run_state}, f)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        open(os.path.join(path, COMPLETE_MARKER), "w").close()
        accelerator.print(f"checkpoint {path}: {directory_bytes(path) / 2**20:.1f} MiB")
        if args.checkpoints_total_limit > 0:  # keep the newest N (0 = keep all)
            for old in list_checkpoints(args.output_dir)[: -args.checkpoints_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator, checkpoint: str, run_state: dict) -> dict:
    """Check the checkpoint against this run (processes, towers, trainable set), then restore it. Returns the
    per-rank trainer state."""
    state_file = os.path.join(checkpoint, f"trainer_state_rank{accelerator.process_index}.json")
    with open(state_file) as f:
        state = json.load(f)
    if state["world_size"] != accelerator.num_processes:
        raise ValueError(
            f"{checkpoint} was written by {state['world_size']} processes, this run has {accelerator.num_processes}"
        )
    check_model_record(state.get("model", {}), run_state["model"], checkpoint)
    if state.get("trainable") != run_state["trainable"]:
        raise ValueError(f"{checkpoint}: its trainable parameters differ from this model's (adapters, LoRA settings)")
    kwargs = {"load_module_strict": False} if accelerator.distributed_type == DistributedType.DEEPSPEED else {}
    accelerator.load_state(checkpoint, **kwargs)
    return state


# ----------------------------------------------------------------------------------------------- setup
@dataclasses.dataclass
class TrainSetup:
    model: torch.nn.Module  # prepared (DDP / DeepSpeed engine)
    unwrapped: FrozenCaptionerForConditionalGeneration
    processor: FrozenCaptionerProcessor
    optimizer: object
    lr_scheduler: object
    trainable: list
    model_dtype: torch.dtype
    ds_config: dict
    run_state: dict  # what a checkpoint records about the model: {"model": record, "trainable": {name: shape}}


def deepspeed_dtype(ds_config: dict) -> torch.dtype | None:
    """The dtype DeepSpeed casts the module to (it does so in `deepspeed.initialize`); loading the towers in it
    skips a transient fp32 copy (7 GB at the paper's 1.78B parameters)."""
    if ds_config.get("bf16", {}).get("enabled") is True:
        return torch.bfloat16
    if ds_config.get("fp16", {}).get("enabled") is True:
        return torch.float16
    return None


def setup(args, accelerator) -> TrainSetup:
    """Model + processor, optimizer and schedule, `accelerator.prepare`. Without DeepSpeed every parameter is float32
    (AMP's GradScaler needs fp32 trainable weights); with DeepSpeed the module is loaded in its 16-bit dtype."""
    ds_plugin = accelerator.state.deepspeed_plugin
    ds_config = ds_plugin.deepspeed_config if ds_plugin is not None else {}
    model, processor = load_model_and_processor(args, dtype=deepspeed_dtype(ds_config))
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    run_state = {
        "model": model_record(args, model),
        "trainable": {n: list(p.shape) for n, p in model.named_parameters() if p.requires_grad},
    }
    if ds_plugin is not None:
        ds_config["train_micro_batch_size_per_gpu"] = (
            args.image_batch_size if args.p_image > 0 else args.video_batch_size
        )
        if ds_config.get("gradient_clipping", "auto") == "auto":
            ds_config["gradient_clipping"] = args.max_grad_norm
        opt_params = ds_config.get("optimizer", {}).get("params", {})
        for key, value in {"betas": [args.adam_beta1, args.adam_beta2], "eps": args.adam_epsilon}.items():
            if opt_params.get(key) == "auto":  # accelerate only fills lr / weight_decay itself
                opt_params[key] = value
    optimizer, lr_scheduler = build_optimizer_and_scheduler(model, args, ds_config)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        register_trainable_only_load_hook(accelerator, model)
    unwrapped = accelerator.unwrap_model(model)
    return TrainSetup(
        model=model,
        unwrapped=unwrapped,
        processor=processor,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        trainable=[p for p in unwrapped.parameters() if p.requires_grad],
        model_dtype=next(unwrapped.parameters()).dtype,
        ds_config=ds_config,
        run_state=run_state,
    )


def build_data_index(accelerator, files: list[str]) -> ShardIndex:
    """The footers of a stream's files, read once on the main process (threads) and broadcast to every rank: at 50K
    shards x 64 ranks that is 50K footer reads instead of 3.2M. The DataLoader workers inherit it."""
    footers = ShardIndex.from_files(files).to_dict() if accelerator.is_main_process else None
    index = ShardIndex.from_dict(broadcast_from_rank0(footers))
    if [os.path.basename(f) for f in index.files] != [os.path.basename(f) for f in files]:
        raise ValueError(f"rank {accelerator.process_index} sees other data files than the main process")
    index.files = list(files)  # this rank's paths (same files)
    return index


VISUAL_INPUTS = ("pixel_values", "vision_pooled_states", "vision_hidden_states")


def model_inputs(batch: dict, device, dtype: torch.dtype) -> dict:
    """A collated batch -> the model's keyword arguments: tensors on `device`, the visual input (pixels or cached
    features) in the model's dtype; plain values (`vision_num_frames`) as they are."""
    batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
    for key in VISUAL_INPUTS:
        if key in batch:
            batch[key] = batch[key].to(dtype)
    return batch


def build_loader(args, accelerator, processor, data_state: dict | None, model=None) -> MixedModalityLoader:
    """The run's streams and modality draw. A stream of feature-cache shards (detected from their `features`
    column) is checked against `model` / `processor`: a cache made by another tower, preprocessing or frame count is
    refused (`train.feature_cache.check_cache_record`)."""
    sampler = ModalitySampler(
        args.p_image,
        seed=args.seed,
        rank=accelerator.process_index,
        synchronized=args.modality_sampling == "synchronized",
        sequence=args.modality_sequence,
    )
    batch_sizes, files = {}, {}
    needed = needed_modalities(args)
    if IMAGE in needed:
        batch_sizes[IMAGE], files[IMAGE] = args.image_batch_size, expand_files(args.image_train_files)
    if VIDEO in needed:
        batch_sizes[VIDEO], files[VIDEO] = args.video_batch_size, expand_files(args.video_train_files)
    consumed = data_state["consumed"] if data_state is not None else dict.fromkeys(batch_sizes, 0)
    if data_state is not None:
        check_data_state(data_state, args.dataloader_num_workers, batch_sizes)
    streams = {
        name: CaptionBatchStream(
            files[name],
            processor,
            name,
            batch_sizes[name],
            num_frames=1 if name == IMAGE else processor.num_frames,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=args.seed,
            shuffle_buffer=args.shuffle_buffer,
            shuffle_buffer_mb=args.shuffle_buffer_mb,
            bucket_batches=args.bucket_batches,
            consumed=consumed[name],
            image_size=args.image_size,
            index=build_data_index(accelerator, files[name]),
        )  # fmt: skip
        for name in batch_sizes
    }
    for name, stream in streams.items():
        if stream.index.feature_record is not None:
            if model is None:
                raise ValueError(f"the {name} stream reads a feature cache: build_loader needs the model to check it")
            check_cache_record(stream.index.feature_record, model, processor, stream.num_frames, f"{name} stream")
            accelerator.print(f"{name} stream: cached {stream.index.feature_record['tokens']} features "
                              f"{stream.index.feature_record['shape']} {stream.index.feature_record['dtype']} "
                              "(no frame decoding, no vision tower forward)")  # fmt: skip
    loader = MixedModalityLoader(streams, sampler, num_workers=args.dataloader_num_workers)
    if data_state is not None:
        check_data_state(data_state, args.dataloader_num_workers, batch_sizes, loader.stream_settings())
        sampler.load_state_dict(data_state["sampler"])
        loader.load_counters(data_state)
    for name, stream in streams.items():
        mib = stream.block_rows * stream.index.bytes_per_row / 2**20
        accelerator.print(
            f"{name} stream: {stream.index.num_rows:,} rows in {len(stream.index.files):,} files / "
            f"{stream.index.num_units:,} row groups (largest {stream.index.max_unit_rows:,} rows); shuffle block "
            f"{stream.block_rows:,} rows ~ {mib:,.0f} MiB per worker, x{max(1, args.dataloader_num_workers)} workers"
        )
    return loader


# ----------------------------------------------------------------------------------------------- logging
class StepLog:
    """Per-step losses stay on the device until a flush, which moves them and the window's statistics to the host in
    one transfer and writes one jsonl line per step (`logs/train_rank{r}.jsonl`: step, loss, modalities, lr)."""

    def __init__(self, path: str, device):
        self.file = open(path, "a")
        self.device = device
        self.pending = []  # (step, loss tensor, modalities, lr)

    def add(self, step: int, loss: torch.Tensor, modalities: list[str], lr: float):
        self.pending.append((step, loss, modalities, lr))

    def flush(self, extra: torch.Tensor | None = None) -> list[float]:
        """Write the pending lines; returns `extra` (a 1-D device tensor) on the host, moved in the same transfer."""
        parts = [loss.reshape(1) for _, loss, _, _ in self.pending] + ([extra] if extra is not None else [])
        if not parts:
            return []
        host = torch.cat([p.double() for p in parts]).tolist()  # the one device -> host transfer
        for (step, _, modalities, lr), loss in zip(self.pending, host):
            self.file.write(json.dumps({"step": step, "loss": loss, "modalities": modalities, "lr": lr}) + "\n")
        self.file.flush()
        rest = host[len(self.pending) :]
        self.pending = []
        return rest

    def close(self):
        self.flush()
        self.file.close()


def write_resources(args, accelerator, start_step: int, step: int, seconds: float):
    """One line per launch and rank in `logs/resources_rank{r}.jsonl`: peak RSS of this process (DataLoader workers
    are separate processes), peak CUDA memory, seconds per optimizer step of this launch."""
    line = {
        "start_step": start_step,
        "end_step": step,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, step - start_step),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }
    with open(os.path.join(args.output_dir, "logs", f"resources_rank{accelerator.process_index}.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def current_lr(optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr) if not isinstance(lr, torch.Tensor) else lr.item()


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    kwargs_handlers = []
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs_handlers.append(InitProcessGroupKwargs(backend="gloo"))  # CPU (tests, demo); DeepSpeed needs it too
    report_to = None if args.report_to == "none" else args.report_to
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
        kwargs_handlers=kwargs_handlers,
        step_scheduler_with_optimizer=False,  # stepped once per optimizer step below (not once per process)
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(args.seed)  # identical adapter init on every rank; per-rank draws are seeded separately (seed + rank)
    if accelerator.is_main_process:
        os.makedirs(os.path.join(args.output_dir, "logs"), exist_ok=True)
        with open(os.path.join(args.output_dir, "train_args.json"), "w") as f:
            json.dump(vars(args), f, indent=2)
    accelerator.wait_for_everyone()

    run = setup(args, accelerator)
    model, optimizer, lr_scheduler, unwrapped = run.model, run.optimizer, run.lr_scheduler, run.unwrapped
    is_deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    zero_stage = model.zero_optimization_stage() if is_deepspeed else None

    # -- resume: trainable weights/optimizer/scheduler/RNG via accelerate; step, data position, draws per rank -------
    start_step, data_state = 0, None
    checkpoint = resolve_checkpoint(args)
    if checkpoint:
        accelerator.print(f"resuming from {checkpoint}")
        state = load_checkpoint(accelerator, checkpoint, run.run_state)
        start_step, data_state = state["step"], state["data"]
    loader = build_loader(args, accelerator, run.processor, data_state, model=run.unwrapped)

    if report_to:  # trackers live on the main process only; every process calls init_trackers
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers("tensorboard", config=hparams)

    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
    batch_sizes = {name: stream.batch_size for name, stream in loader.streams.items()}
    run_info = {
        "distributed_type": str(accelerator.distributed_type),
        "zero_stage": zero_stage,
        "backend": backend,
        "mixed_precision": accelerator.mixed_precision,
        "model_dtype": str(run.model_dtype),
        "num_processes": world,
    }
    if accelerator.is_main_process:
        with open(os.path.join(args.output_dir, "logs", "run_info.json"), "w") as f:
            json.dump(run_info, f, indent=2)
    accelerator.print(
        f"{accelerator.distributed_type} (ZeRO stage {zero_stage}, {backend}), mixed precision "
        f"{accelerator.mixed_precision}, dtype {run.model_dtype}; training {sum(p.numel() for p in run.trainable):,} "
        f"parameters on {world} process(es); batches: {batch_sizes}, "
        f"p_image={args.p_image} ({args.modality_sampling}, {args.modality_draw}), steps {start_step}->{args.max_train_steps}"
    )
    log = StepLog(os.path.join(args.output_dir, "logs", f"train_rank{rank}.jsonl"), accelerator.device)
    progress = tqdm(
        range(args.max_train_steps), initial=start_step, disable=not accelerator.is_local_main_process, desc="train"
    )
    names = gate_names(unwrapped)
    window = {"rows": 0, "video": 0, "micro": 0, "time": time.perf_counter(), "steps": 0}
    window_losses = []
    train_start, step = time.perf_counter(), start_step
    while step < args.max_train_steps:
        lr = current_lr(optimizer)  # the LR this optimizer step uses (both backends step the schedule after it)
        step_loss = torch.zeros((), device=accelerator.device)
        modalities = []
        per_step = args.modality_draw == "per_step" and not args.modality_sequence
        step_modality = loader.sampler.draw() if per_step else None  # None: drawn per micro-batch
        for _ in range(args.gradient_accumulation_steps):
            modality, batch = loader.next_batch(step_modality)
            modalities.append(modality)
            batch = model_inputs(batch, accelerator.device, run.model_dtype)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0 and not is_deepspeed:
                    accelerator.clip_grad_norm_(run.trainable, args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step_loss += loss.detach().float() / args.gradient_accumulation_steps  # stays on the device
            window["rows"] += batch["input_ids"].shape[0]
            window["video"] += modality == VIDEO
            window["micro"] += 1
        step += 1
        progress.update(1)
        log.add(step, step_loss, modalities, lr)
        window_losses.append(step_loss)
        window["steps"] += 1

        if step % args.logging_steps == 0 or step == args.max_train_steps:
            elapsed = time.perf_counter() - window["time"]
            counts = [window["steps"], window["rows"], window["video"], window["micro"],
                      sum(loader.corrupt.values()), sum(loader.short_frames.values())]  # fmt: skip
            stats = torch.cat([torch.stack(window_losses).sum().reshape(1).double(),
                               torch.tensor(counts, dtype=torch.float64, device=accelerator.device)])  # fmt: skip
            stats = accelerator.reduce(stats, reduction="sum")
            host = log.flush(torch.cat([stats, gate_tensor(unwrapped).double()]))  # one transfer
            loss_sum, n, rows, video, micro, corrupt, short = host[:7]
            logs = {
                "train/loss": loss_sum / n,
                "train/lr": lr,
                "train/video_batch_fraction": video / micro,
                "perf/samples_per_second": rows / elapsed,
                "perf/steps_per_second": window["steps"] / elapsed,
                "data/corrupt_rows_skipped": corrupt,
                "data/short_frame_rows": short,
                **dict(zip(names, host[7:])),
            }
            progress.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{lr:.2e}")
            if report_to:
                accelerator.log(logs, step=step)
            window = {"rows": 0, "video": 0, "micro": 0, "time": time.perf_counter(), "steps": 0}
            window_losses = []

        if args.checkpointing_steps and step % args.checkpointing_steps == 0:
            log.flush()  # the lines of every step up to the checkpoint are on disk before it counts as complete
            save_checkpoint(accelerator, args, step, loader, run.run_state, unwrapped)
        if args.stop_after_steps is not None and step >= args.stop_after_steps and step < args.max_train_steps:
            accelerator.print(f"stopping after step {step} without a final save (--stop_after_steps)")
            log.close()
            write_resources(args, accelerator, start_step, step, time.perf_counter() - train_start)
            accelerator.end_training()
            return None
    train_seconds = time.perf_counter() - train_start
    progress.close()
    log.close()

    # -- final model in the Hub remote-code format ------------------------------------------------------------------
    accelerator.wait_for_everyone()
    final_dir = os.path.join(args.output_dir, "model")
    # ZeRO-1/2 and DDP keep the whole module on every rank: the main process saves its own state dict.
    # accelerate's get_state_dict would clone every tensor on every rank (+3.6 GB per rank at the paper's shape).
    gathered = is_deepspeed and zero_stage == 3 or accelerator.distributed_type == DistributedType.FSDP
    state_dict = accelerator.get_state_dict(model) if gathered else None
    # accelerate's final save (STYLE.md §6); plain save_pretrained writes auto_map and the remote-code .py files
    unwrapped.save_pretrained(
        final_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        run.processor.save_pretrained(final_dir)
    resources = write_resources(args, accelerator, start_step, step, train_seconds)
    totals = torch.tensor([sum(loader.corrupt.values()), sum(loader.rows.values())], device=accelerator.device)
    totals = accelerator.reduce(totals, reduction="sum").tolist()
    per_rank = accelerator.gather(torch.tensor([[resources["peak_rss_bytes"], train_seconds]], dtype=torch.float64,
                                               device=accelerator.device)).tolist()  # fmt: skip
    if accelerator.is_main_process:
        summary = {
            "model_dir": final_dir,
            "steps": step,
            "world_size": world,
            "run": run_info,
            "rows_seen": int(totals[1]),
            "corrupt_rows_skipped": int(totals[0]),
            "corrupt_rows_skipped_rank0": dict(loader.corrupt),
            "short_frame_rows_rank0": dict(loader.short_frames),
            "gates": gate_values(unwrapped),
            "peak_rss_bytes_per_rank": [int(r[0]) for r in per_rank],
            "seconds_per_step": max(r[1] for r in per_rank) / max(1, step - start_step),
            "model_bytes": directory_bytes(final_dir),
        }
        with open(os.path.join(args.output_dir, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        accelerator.print(f"saved the final model to {final_dir}")
    accelerator.end_training()
    return final_dir


if __name__ == "__main__":
    main()
