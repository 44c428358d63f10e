"""Full-size dress rehearsal (issue 10, point 4): the paper's shapes through the real trainer.

Random-init towers with the exact configs of `facebook/opt-1.3b` and `facebook/timesformer-base-finetuned-k400`
(typed in below from their `config.json`; the Hub is unreachable), saved as those repositories store them (OPT in
fp16 with the GPT-2 BPE tokenizer, TimeSformer in fp32 as a 400-class video classifier with its VideoMAE processor),
adapters before layers 12..22, `accelerate launch` with DeepSpeed ZeRO-2: 3 optimizer steps, each accumulating one
image micro-batch of 32 and one video micro-batch of 4 x 8 frames in that order (`--modality_sequence image video`
with `--gradient_accumulation_steps 2`), preempted after step 2 (its checkpoint), resumed, final save, reloaded with
`trust_remote_code`, and one `generate()`.

CPU (slow): 2 processes, bf16, gloo; summed peak RSS of both ranks < 18 GB. CUDA (gpu, benchmarks/gpu_suite.sh):
1 process, fp16. Prints the peak memory, the checkpoint size and the seconds per step.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# https://huggingface.co/facebook/opt-1.3b/blob/main/config.json
OPT_1_3B = {
    "activation_dropout": 0.0, "activation_function": "relu", "attention_dropout": 0.0, "bos_token_id": 2,
    "do_layer_norm_before": True, "dropout": 0.1, "eos_token_id": 2, "ffn_dim": 8192, "hidden_size": 2048,
    "init_std": 0.02, "layerdrop": 0.0, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 32, "num_hidden_layers": 24, "pad_token_id": 1, "prefix": "</s>",
    "torch_dtype": "float16", "use_cache": True, "vocab_size": 50272, "word_embed_proj_dim": 2048,
}  # fmt: skip
# https://huggingface.co/facebook/timesformer-base-finetuned-k400/blob/main/config.json (id2label: 400 classes)
TIMESFORMER_BASE_K400 = {
    "attention_probs_dropout_prob": 0.0, "attention_type": "divided_space_time", "drop_path_rate": 0,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 768, "image_size": 224,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-06, "model_type": "timesformer",
    "num_attention_heads": 12, "num_channels": 3, "num_frames": 8, "num_hidden_layers": 12, "patch_size": 16,
    "qkv_bias": True, "torch_dtype": "float32", "num_labels": 400,
}  # fmt: skip
# .../timesformer-base-finetuned-k400/blob/main/preprocessor_config.json
TIMESFORMER_PREPROCESSOR = {
    "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_normalize": True, "do_rescale": True,
    "do_resize": True, "image_mean": [0.45, 0.45, 0.45], "image_std": [0.225, 0.225, 0.225], "resample": 2,
    "rescale_factor": 1 / 255, "size": {"shortest_edge": 224},
}  # fmt: skip
ADAPTER_LAYERS = [12, 14, 16, 18, 20, 22]


def write_paper_towers(root) -> tuple[str, str]:
    """Random towers in the paper's shapes, stored as on the Hub. Peak RAM ~6 GB (OPT built in fp16, saved)."""
    import gc

    from transformers import (
        OPTConfig,
        OPTForCausalLM,
        TimesformerConfig,
        TimesformerForVideoClassification,
        VideoMAEVideoProcessor,
    )

    from frozencaptioner.tiny import gpt2_bpe_tokenizer

    text_dir, vision_dir = os.path.join(root, "opt-1.3b"), os.path.join(root, "timesformer-base-finetuned-k400")
    if all(os.path.exists(os.path.join(d, "model.safetensors")) for d in (text_dir, vision_dir)):
        return vision_dir, text_dir  # written by an earlier call into the same folder
    torch.manual_seed(0)
    opt_config = OPTConfig(**{k: v for k, v in OPT_1_3B.items() if k not in ("model_type", "torch_dtype")})
    text = OPTForCausalLM._from_config(opt_config, dtype=torch.float16)
    text.save_pretrained(text_dir)
    del text
    gc.collect()
    gpt2_bpe_tokenizer().save_pretrained(text_dir)
    ts = {k: v for k, v in TIMESFORMER_BASE_K400.items() if k not in ("model_type", "torch_dtype")}
    vision = TimesformerForVideoClassification(TimesformerConfig(**ts))
    vision.save_pretrained(vision_dir)
    del vision
    gc.collect()
    VideoMAEVideoProcessor(**TIMESFORMER_PREPROCESSOR).save_pretrained(vision_dir)
    return vision_dir, text_dir


def write_paper_data(root, steps: int, world: int) -> tuple[str, str]:
    """JPEG rows at the builders' 256-px short side: enough images (32 per step) and 8-frame clips (4 per step) for
    every rank."""
    from train.data import write_parquet_shard
    from train.shapes import training_rows

    images = training_rows(32 * steps * world, "image", seed=1, size=256)
    videos = training_rows(4 * steps * world, "video", seed=2, num_frames=8, size=256)
    return (
        write_parquet_shard(os.path.join(root, "images.parquet"), images, row_group_size=32),
        write_parquet_shard(os.path.join(root, "videos.parquet"), videos, row_group_size=4),
    )


def rehearse(root, num_processes: int, precision: str, env_extra: dict | None = None, timeout: int = 3600) -> dict:
    """Run the rehearsal in `root`; returns the measurements (and asserts the run's invariants)."""
    vision_dir, text_dir = write_paper_towers(root)
    images, videos = write_paper_data(root, steps=3, world=num_processes)
    out = os.path.join(root, "run")
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               TORCH_EXTENSIONS_DIR=os.path.join(root, "torch_extensions"), HF_HOME=os.path.join(root, "hf_home"),
               **(env_extra or {}))  # fmt: skip
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              os.path.join(REPO, "train", "configs", f"accelerate_deepspeed_zero2_{precision}.yaml"),
              "--num_processes", str(num_processes), os.path.join(REPO, "train", "train.py")]  # fmt: skip
    train_args = [
        "--vision_model_name_or_path", vision_dir, "--text_model_name_or_path", text_dir,
        "--adapter_layers", *map(str, ADAPTER_LAYERS), "--num_frames", "8", "--image_size", "224",
        "--gradient_checkpointing", "--image_train_files", images, "--video_train_files", videos,
        "--image_batch_size", "32", "--video_batch_size", "4", "--modality_sequence", "image", "video",
        "--gradient_accumulation_steps", "2", "--max_train_steps", "3", "--checkpointing_steps", "2",
        "--learning_rate", "1e-3", "--num_warmup_steps", "1", "--dataloader_num_workers", "0", "--shuffle_buffer", "0",
        "--bucket_batches", "1", "--logging_steps", "1", "--report_to", "none", "--output_dir", out,
    ]  # fmt: skip
    for extra in (["--stop_after_steps", "2"], ["--resume_from_checkpoint", "latest"]):
        proc = subprocess.run(launch + train_args + extra, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"

    checkpoint = os.path.join(out, "checkpoints", "step_00000002")
    from test_train_checkpoints import tower_tensors

    from train.train import directory_bytes

    assert tower_tensors(checkpoint) == []
    resources = [[json.loads(line) for line in open(p)] for p in sorted(glob.glob(os.path.join(out, "logs", "resources_rank*.jsonl")))]  # fmt: skip
    assert len(resources) == num_processes and all(len(r) == 2 for r in resources)  # 2 launches per rank
    for rank in range(num_processes):
        steps = [json.loads(line) for line in open(os.path.join(out, "logs", f"train_rank{rank}.jsonl"))]
        assert [s["step"] for s in steps] == [1, 2, 3] and all(s["modalities"] == ["image", "video"] for s in steps)
        assert all(np.isfinite(s["loss"]) for s in steps)

    # reload the final model as a user would, and caption one clip
    from transformers import AutoModel, AutoProcessor

    from train.shapes import render_clip

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    device = "cuda" if torch.cuda.is_available() and precision == "fp16" else "cpu"
    model = (
        AutoModel.from_pretrained(os.path.join(out, "model"), trust_remote_code=True, dtype=dtype).to(device).eval()
    )
    processor = AutoProcessor.from_pretrained(os.path.join(out, "model"), trust_remote_code=True)
    clip = render_clip("red", "left", 8, 256, np.random.default_rng(0))
    inputs = processor(videos=[clip], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(pixel_values=inputs["pixel_values"].to(device, dtype), max_new_tokens=4, do_sample=False)
    assert ids.shape[0] == 1 and ids.shape[1] >= 1
    caption = processor.batch_decode(ids)[0]
    launches = [[r[i] for r in resources] for i in range(2)]
    result = {
        "num_processes": num_processes,
        "precision": precision,
        "summed_peak_rss_gb": max(sum(r["peak_rss_bytes"] for r in launch) for launch in launches) / 1e9,
        "peak_rss_gb_per_rank_per_launch": [[r["peak_rss_bytes"] / 1e9 for r in launch] for launch in launches],
        "peak_cuda_gb": [r["peak_cuda_bytes"] / 1e9 for launch in launches for r in launch if r["peak_cuda_bytes"]],
        "seconds_per_step": [max(r["seconds_per_step"] for r in launch) for launch in launches],
        "checkpoint_gb": directory_bytes(checkpoint) / 1e9,
        "final_model_gb": directory_bytes(os.path.join(out, "model")) / 1e9,
        "caption": caption,
    }
    print("REHEARSAL " + json.dumps(result))
    return result


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_paper_shapes_deepspeed_zero2_bf16_two_cpu_processes(tmp_path):
    pytest.importorskip("deepspeed")
    result = rehearse(str(tmp_path), num_processes=2, precision="bf16")
    assert result["summed_peak_rss_gb"] < 18.0, result
    assert result["checkpoint_gb"] < 6.0, result  # adapters + optimizer, no frozen tower (which would add 3.6 GB+)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU rehearsal is the slow test above)")
@pytest.mark.timeout(1800)
def test_paper_shapes_deepspeed_zero2_fp16_one_gpu(tmp_path):
    pytest.importorskip("deepspeed")
    result = rehearse(str(tmp_path), num_processes=1, precision="fp16")
    assert result["checkpoint_gb"] < 6.0, result
