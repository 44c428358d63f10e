"""Pre-train or fine-tune FrozenCaptioner adapters with `accelerate launch` (DDP or DeepSpeed ZeRO-2).

    accelerate launch --config_file train/configs/accelerate_deepspeed_zero2_fp16.yaml train/train.py \
        --config train/configs/pretrain_mix.yaml
    # CPU, 2 processes over gloo (tests, demo):
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train/train.py --config train/configs/demo.yaml

Structure follows accelerate's `examples/by_feature/deepspeed_with_config_support.py` and `complete_nlp_example.py`:
`parse_args()` -> `main()`; one `accelerator.prepare(model, optimizer, lr_scheduler)`; `accelerator.accumulate`;
`save_state` / `load_state` for resume; DeepSpeed's own optimizer/scheduler (`DummyOptim` / `DummyScheduler`) when
the DeepSpeed json defines them. Differences, on purpose:

* The data loaders are NOT passed to `accelerator.prepare`: every rank reads its own part of the streaming shards
  (`split_dataset_by_node` inside `train/data.py`) and draws its own modality each step (the paper: image batch with
  p=0.95, video batch with p=0.05, independently per GPU). accelerate would otherwise shard or dispatch batches from
  rank 0, which breaks the per-rank draw.
* Per-rank training state (modality generator, batches consumed per stream, corrupt-row counts) is written by every
  process into the checkpoint (`trainer_state_rank{r}.json`); accelerate saves custom objects from the main process only.

Run hyperparameters are the flags below; `--config <yaml>` sets their defaults (flags given on the command line win).
Distributed settings (DDP vs DeepSpeed, precision, ZeRO stage) live in the accelerate yaml / DeepSpeed json.
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys
import time


if __package__ in (None, ""):  # `accelerate launch train/train.py`: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DummyOptim, DummyScheduler, InitProcessGroupKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration, FrozenCaptionerProcessor
from train.data import IMAGE, VIDEO, CaptionBatchStream, MixedModalityLoader, ModalitySampler, check_data_state


logger = get_logger(__name__)

CHECKPOINT_PREFIX = "step_"
COMPLETE_MARKER = "CHECKPOINT_COMPLETE"


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
        "--image_train_files", nargs="+", default=None, help="parquet shards (globs) of image-text rows (LAION)"
    )
    g.add_argument(
        "--video_train_files", nargs="+", default=None, help="parquet shards (globs) of video-text rows (HowTo100M)"
    )
    g.add_argument(
        "--p_image", type=float, default=0.95, help="probability that a step draws an image batch (paper: 0.95)"
    )
    g.add_argument("--modality_sampling", choices=["independent", "synchronized"], default="independent",
                   help="independent: each rank draws its own modality (paper); synchronized: all ranks draw the same")  # fmt: skip
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
    g.add_argument("--shuffle_buffer", type=int, default=2000)
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
        "--lr_scheduler_type", default="cosine", help="transformers scheduler name (DDP; DeepSpeed uses its json)"
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
    if args.image_train_files is None and args.p_image > 0:
        parser.error(f"--p_image {args.p_image} > 0 needs --image_train_files")
    if args.video_train_files is None and args.p_image < 1:
        parser.error(f"--p_image {args.p_image} < 1 needs --video_train_files")
    return args


def expand_files(patterns) -> list[str]:
    files = []
    for pattern in patterns or []:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no data files match {pattern!r}")
        files.extend(matches)
    return files


# ----------------------------------------------------------------------------------------------- model
def load_model_and_processor(args):
    if args.model_name_or_path:
        model = FrozenCaptionerForConditionalGeneration.from_pretrained(args.model_name_or_path)
        processor = FrozenCaptionerProcessor.from_pretrained(args.model_name_or_path)
    else:
        from transformers import AutoTokenizer, AutoVideoProcessor

        model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(
            args.vision_model_name_or_path,
            args.text_model_name_or_path,
            adapter_layers=args.adapter_layers,
            gate_type=args.gate_type,
            gate_init=args.gate_init,
            cross_attention=args.cross_attention,
        )
        processor = FrozenCaptionerProcessor(
            video_processor=AutoVideoProcessor.from_pretrained(args.vision_model_name_or_path),
            tokenizer=AutoTokenizer.from_pretrained(args.text_model_name_or_path),
            num_frames=args.num_frames or model.config.num_frames,
        )
    if args.num_frames:
        processor.num_frames = args.num_frames
    if processor.num_frames > model.config.num_frames:
        raise ValueError(f"num_frames {processor.num_frames} > the vision tower's {model.config.num_frames}")
    if args.image_size:  # the model interpolates position embeddings; the processor crops at this size
        processor.video_processor.size = {"shortest_edge": args.image_size}
        processor.video_processor.crop_size = {"height": args.image_size, "width": args.image_size}
    return model, processor


def trainable_param_groups(model, weight_decay: float):
    """Only `requires_grad` parameters (ZeRO-2 has open bugs with frozen params in the optimizer); no decay on
    biases, LayerNorms and gates."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or name.endswith("_gate") else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def gate_values(model) -> dict:
    """Mean tanh(gate) of every adapter (0 = the branch is off)."""
    values = {}
    for layer in model.gated_cross_attn_layers:
        values[f"gates/attn_layer{layer.layer_idx}"] = layer.attn_gate.detach().float().tanh().mean().item()
        values[f"gates/ffn_layer{layer.layer_idx}"] = layer.ffn_gate.detach().float().tanh().mean().item()
    return values


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


def resolve_checkpoint(args) -> str | None:
    if not args.resume_from_checkpoint:
        return None
    if args.resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(args.output_dir)
        return checkpoints[-1] if checkpoints else None  # nothing saved yet: start from scratch
    if not os.path.exists(os.path.join(args.resume_from_checkpoint, COMPLETE_MARKER)):
        raise FileNotFoundError(f"{args.resume_from_checkpoint} is not a complete checkpoint (no {COMPLETE_MARKER})")
    return args.resume_from_checkpoint


def save_checkpoint(accelerator, args, step: int, loader: MixedModalityLoader):
    path = os.path.join(args.output_dir, "checkpoints", f"{CHECKPOINT_PREFIX}{step:08d}")
    accelerator.save_state(path)  # model, optimizer, scheduler, GradScaler, RNG states of every process
    with open(os.path.join(path, f"trainer_state_rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"step": step, "world_size": accelerator.num_processes, "data": loader.state_dict()}, f)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        open(os.path.join(path, COMPLETE_MARKER), "w").close()
        if args.checkpoints_total_limit > 0:  # keep the newest N (0 = keep all)
            for old in list_checkpoints(args.output_dir)[: -args.checkpoints_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


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

    model, processor = load_model_and_processor(args)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()

    # -- optimizer + schedule: DeepSpeed's own when its json defines them (deepspeed_with_config_support.py) --------
    ds_plugin = accelerator.state.deepspeed_plugin
    ds_config = ds_plugin.deepspeed_config if ds_plugin is not None else {}
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
    groups = trainable_param_groups(model, args.weight_decay)
    optimizer_cls = DummyOptim if "optimizer" in ds_config else torch.optim.AdamW
    optimizer = optimizer_cls(
        groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
    )
    if "scheduler" in ds_config:
        lr_scheduler = DummyScheduler(
            optimizer, total_num_steps=args.max_train_steps, warmup_num_steps=args.num_warmup_steps
        )
    else:
        lr_scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=args.num_warmup_steps,
            num_training_steps=args.max_train_steps,
        )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    model_dtype = next(unwrapped.parameters()).dtype
    trainable = [p for p in unwrapped.parameters() if p.requires_grad]

    # -- resume: model/optimizer/scheduler/RNG via accelerate, step + data position + draws from our per-rank state --
    start_step, data_state = 0, None
    checkpoint = resolve_checkpoint(args)
    if checkpoint:
        accelerator.print(f"resuming from {checkpoint}")
        accelerator.load_state(checkpoint)
        state_file = os.path.join(checkpoint, f"trainer_state_rank{rank}.json")
        with open(state_file) as f:
            state = json.load(f)
        if state["world_size"] != world:
            raise ValueError(f"{checkpoint} was written by {state['world_size']} processes, this run has {world}")
        start_step, data_state = state["step"], state["data"]

    # -- data ---------------------------------------------------------------------------------------------------
    sampler = ModalitySampler(
        args.p_image, seed=args.seed, rank=rank, synchronized=args.modality_sampling == "synchronized"
    )
    batch_sizes, files = {}, {}
    if args.p_image > 0:
        batch_sizes[IMAGE], files[IMAGE] = args.image_batch_size, expand_files(args.image_train_files)
    if args.p_image < 1:
        batch_sizes[VIDEO], files[VIDEO] = args.video_batch_size, expand_files(args.video_train_files)
    consumed = dict.fromkeys(batch_sizes, 0)
    if data_state is not None:
        check_data_state(data_state, args.dataloader_num_workers, batch_sizes)
        sampler.load_state_dict(data_state["sampler"])
        consumed = data_state["consumed"]
    streams = {
        name: CaptionBatchStream(
            files[name],
            processor,
            name,
            batch_sizes[name],
            num_frames=1 if name == IMAGE else processor.num_frames,
            rank=rank,
            world_size=world,
            seed=args.seed,
            shuffle_buffer=args.shuffle_buffer,
            bucket_batches=args.bucket_batches,
            consumed=consumed[name],
            image_size=args.image_size,
        )  # fmt: skip
        for name in batch_sizes
    }
    loader = MixedModalityLoader(streams, sampler, num_workers=args.dataloader_num_workers)
    if data_state is not None:
        loader.corrupt.update(data_state["corrupt"])
        loader.rows.update(data_state["rows"])

    if report_to:  # trackers live on the main process only; every process calls init_trackers
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers("tensorboard", config=hparams)

    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
    accelerator.print(
        f"{accelerator.distributed_type} ({backend}), mixed precision {accelerator.mixed_precision}, dtype {model_dtype}; "
        f"training {sum(p.numel() for p in trainable):,} adapter parameters on {world} process(es); "
        f"batches: {batch_sizes}, p_image={args.p_image} ({args.modality_sampling}), steps {start_step}->{args.max_train_steps}"
    )
    loss_log = open(os.path.join(args.output_dir, "logs", f"train_rank{rank}.jsonl"), "a")
    progress = tqdm(
        range(args.max_train_steps), initial=start_step, disable=not accelerator.is_local_main_process, desc="train"
    )
    window = {"loss": 0.0, "n": 0, "rows": 0, "time": time.perf_counter(), "video": 0, "micro": 0}
    step = start_step
    while step < args.max_train_steps:
        step_loss, modalities = 0.0, []
        for _ in range(args.gradient_accumulation_steps):
            modality, batch = loader.next_batch()
            modalities.append(modality)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            batch["pixel_values"] = batch["pixel_values"].to(model_dtype)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0 and ds_plugin is None:
                    accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step_loss += loss.detach().float().item() / args.gradient_accumulation_steps
            window["rows"] += batch["input_ids"].shape[0]
            window["video"] += modality == VIDEO
            window["micro"] += 1
        step += 1
        progress.update(1)
        lr = lr_scheduler.get_last_lr()[0]
        loss_log.write(json.dumps({"step": step, "loss": step_loss, "modalities": modalities, "lr": lr}) + "\n")
        loss_log.flush()
        window["loss"] += step_loss
        window["n"] += 1

        if step % args.logging_steps == 0 or step == args.max_train_steps:
            elapsed = time.perf_counter() - window["time"]
            stats = torch.tensor(
                [window["loss"], window["n"], window["rows"], window["video"], window["micro"],
                 sum(loader.corrupt.values())], dtype=torch.float64, device=accelerator.device,
            )  # fmt: skip
            stats = accelerator.reduce(stats, reduction="sum")
            logs = {
                "train/loss": (stats[0] / stats[1]).item(),
                "train/lr": lr,
                "train/video_batch_fraction": (stats[3] / stats[4]).item(),
                "perf/samples_per_second": stats[2].item() / elapsed,
                "perf/steps_per_second": window["n"] / elapsed,
                "data/corrupt_rows_skipped": stats[5].item(),
                **gate_values(unwrapped),
            }
            progress.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{lr:.2e}")
            if report_to:
                accelerator.log(logs, step=step)
            window = {"loss": 0.0, "n": 0, "rows": 0, "time": time.perf_counter(), "video": 0, "micro": 0}

        if args.checkpointing_steps and step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args, step, loader)
        if args.stop_after_steps is not None and step >= args.stop_after_steps and step < args.max_train_steps:
            accelerator.print(f"stopping after step {step} without a final save (--stop_after_steps)")
            loss_log.close()
            accelerator.end_training()
            return None
    progress.close()
    loss_log.close()

    # -- final model in the Hub remote-code format ------------------------------------------------------------------
    accelerator.wait_for_everyone()
    final_dir = os.path.join(args.output_dir, "model")
    state_dict = accelerator.get_state_dict(model)
    # accelerate's final save (STYLE.md §6); plain save_pretrained writes auto_map and the remote-code .py files
    unwrapped.save_pretrained(
        final_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(final_dir)
    totals = torch.tensor([sum(loader.corrupt.values()), sum(loader.rows.values())], device=accelerator.device)
    totals = accelerator.reduce(totals, reduction="sum")
    if accelerator.is_main_process:
        summary = {
            "model_dir": final_dir,
            "steps": step,
            "world_size": world,
            "rows_seen": int(totals[1]),
            "corrupt_rows_skipped": int(totals[0]),
            "corrupt_rows_skipped_rank0": dict(loader.corrupt),
            "gates": gate_values(unwrapped),
        }
        with open(os.path.join(args.output_dir, "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        accelerator.print(f"saved the final model to {final_dir}")
    accelerator.end_training()
    return final_dir


if __name__ == "__main__":
    main()
