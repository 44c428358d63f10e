"""Caption an evaluation split and score it with CIDEr-D (+ BLEU-4, METEOR, ROUGE-L) in one call over the whole split.

    python train/evaluate_captions.py --model out/model --data_files data/msrvtt/test-*.parquet \
        --dataset_name msrvtt --split test --output_json out/eval_results.json
    # several processes caption disjoint parts, the main process scores everything at once:
    accelerate launch train/evaluate_captions.py ...

Eval rows are `{"id": str, "frames": list<binary> (JPEG), "references": list<str>}` (the builders' schema). Decoding
is greedy with no beams by default, as in the paper. The JSON written to `--output_json` (read by the publishing step
for the model card):

    {"dataset_name": str, "split": str, "model_path": str, "num_videos": int, "num_skipped_corrupt": int,
     "metrics": {"CIDEr-D": float, "BLEU-4": float, "METEOR": float, "ROUGE-L": float},   # x100, as papers report
     "metric_scale": 100, "generation": {"num_beams": int, "do_sample": bool, "max_new_tokens": int},
     "num_frames": int, "reverse_frames": bool, "image_size": int, "predictions_file": str, "metric_module": str, "date": str}
"""

import argparse
import datetime
import glob
import json
import os
import sys


if __package__ in (None, ""):  # `python train/x.py`: the checkout on top of sys.path instead of this folder
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch

from frozencaptioner.captioning import load_captioner
from train.data import CorruptSample, decode_frames


METRIC_MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "cider_d")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a FrozenCaptioner folder in the Hub format")
    p.add_argument("--data_files", nargs="+", required=True, help="parquet shards (globs) of eval rows")
    p.add_argument("--dataset_name", default="custom")
    p.add_argument("--split", default="test")
    p.add_argument("--output_json", default=None, help="default: <model>/eval_results.json")
    p.add_argument(
        "--predictions_file", default=None, help="JSONL of id/prediction/references (default: next to the JSON)"
    )
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=20)
    p.add_argument("--num_beams", type=int, default=1)
    p.add_argument("--do_sample", action="store_true")
    p.add_argument(
        "--num_frames",
        type=int,
        default=None,
        help="frames per clip, spread uniformly (sample_frame_indices); 1 = the centre frame (default: the processor's)",
    )
    p.add_argument(
        "--reverse_frames",
        action="store_true",
        help="play the sampled frames backwards (a model that reads motion flips its direction words)",
    )
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--max_videos", type=int, default=None)
    p.add_argument("--metric", default=METRIC_MODULE, help="the `evaluate` metric module (local path)")
    p.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="score only these (e.g. CIDEr-D: no METEOR Java run); default: all four",
    )
    p.add_argument("--trust_remote_code", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def load_eval_rows(patterns, max_videos=None) -> list[dict]:
    import datasets

    files = sorted(f for pattern in patterns for f in (glob.glob(pattern) or [pattern]))
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(f"eval data files not found: {missing}")
    ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    rows = []
    for row in ds:
        rows.append({"id": row["id"], "frames": row["frames"], "references": list(row["references"])})
        if max_videos and len(rows) >= max_videos:
            break
    return rows


@torch.no_grad()
def caption_rows(
    model,
    processor,
    rows,
    batch_size=16,
    num_frames=None,
    image_size=None,
    device="cpu",
    reverse_frames=False,
    **generate_kwargs,
):
    """Returns (predictions aligned with `rows` (None for corrupt rows), number of corrupt rows). With
    `reverse_frames`, each clip's sampled frames are fed last to first."""
    num_frames = num_frames or processor.num_frames
    kwargs = {}
    if image_size:
        kwargs = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}
    predictions, corrupt = [None] * len(rows), 0
    for start in range(0, len(rows), batch_size):
        clips, index = [], []
        for i in range(start, min(start + batch_size, len(rows))):
            try:
                clip = decode_frames(rows[i]["frames"], num_frames)  # (T, H, W, 3)
                clips.append(clip[::-1].copy() if reverse_frames else clip)
                index.append(i)
            except CorruptSample as err:
                print(f"skipping corrupt eval video {rows[i]['id']!r}: {err}", file=sys.stderr)
                corrupt += 1
        if not clips:
            continue
        pixels = processor.video_processor(videos=clips, do_sample_frames=False, return_tensors="pt", **kwargs)
        pixel_values = pixels["pixel_values"].to(device=device, dtype=next(model.parameters()).dtype)
        ids = model.generate(pixel_values=pixel_values, **generate_kwargs)
        for i, text in zip(index, processor.batch_decode(ids, skip_special_tokens=True)):
            predictions[i] = text.strip()
    return predictions, corrupt


def score(predictions, references, metric=METRIC_MODULE, metrics=None) -> dict:
    """All four metrics (or `metrics`) in ONE `compute` call over the whole split (CIDEr-D's IDF is a corpus
    statistic)."""
    import evaluate

    kwargs = {"metrics": list(metrics)} if metrics else {}
    return evaluate.load(metric).compute(predictions=predictions, references=references, **kwargs)


def evaluate_split(args) -> dict:
    from accelerate import PartialState

    state = PartialState()
    model, processor = load_captioner(
        args.model, device=state.device, dtype="auto", trust_remote_code=args.trust_remote_code
    )
    rows = load_eval_rows(args.data_files, args.max_videos)
    generate_kwargs = {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams, "do_sample": args.do_sample}
    with state.split_between_processes(list(range(len(rows)))) as mine:
        preds, corrupt = caption_rows(
            model, processor, [rows[i] for i in mine], args.batch_size, args.num_frames, args.image_size, state.device,
            args.reverse_frames, **generate_kwargs,
        )  # fmt: skip
        local = [(i, p) for i, p in zip(mine, preds)]
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        local = gather_object(local)
        corrupt = sum(gather_object([corrupt]))
    if not state.is_main_process:
        return {}
    by_index = dict(local)
    kept = [i for i in range(len(rows)) if by_index.get(i) is not None]
    predictions = [by_index[i] for i in kept]
    references = [rows[i]["references"] for i in kept]
    values = score(predictions, references, args.metric, args.metrics)

    output_json = args.output_json or os.path.join(args.model, "eval_results.json")
    os.makedirs(os.path.dirname(os.path.abspath(output_json)), exist_ok=True)
    predictions_file = args.predictions_file or os.path.splitext(output_json)[0] + "_predictions.jsonl"
    with open(predictions_file, "w") as f:
        for i in kept:
            f.write(
                json.dumps({"id": rows[i]["id"], "prediction": by_index[i], "references": rows[i]["references"]})
                + "\n"
            )
    results = {
        "dataset_name": args.dataset_name,
        "split": args.split,
        "model_path": os.path.abspath(args.model),
        "num_videos": len(kept),
        "num_skipped_corrupt": int(corrupt),
        "metrics": {name: round(100.0 * value, 2) for name, value in values.items()},
        "metric_scale": 100,
        "generation": generate_kwargs,
        "num_frames": args.num_frames or processor.num_frames,
        "reverse_frames": bool(args.reverse_frames),
        "image_size": args.image_size or processor.video_processor.crop_size["height"],
        "predictions_file": os.path.abspath(predictions_file),
        "metric_module": os.path.abspath(args.metric),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(output_json, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({"output_json": output_json, **results["metrics"], "num_videos": len(kept)}))
    return results


def main(argv=None):
    return evaluate_split(parse_args(argv))


if __name__ == "__main__":
    main()
