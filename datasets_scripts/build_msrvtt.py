"""MSR-VTT captioning benchmark (split 6513 train / 497 val / 2990 test, 20 references per video).

This is the *captioning* split of the original MSR-VTT release (Xu et al., CVPR 2016), read from its annotation
files: `train_val_videodatainfo.json` (videos `video0`..`video7009`, `"split": "train" | "validate"`) and
`test_videodatainfo.json` (`video7010`..`video9999`, `"split": "test"`); each has `"videos": [{"video_id",
"split", ...}]` and `"sentences": [{"video_id", "caption", "sen_id"}]`. It is NOT the 9k/1k retrieval split
(JSFusion / "1k-A"). Videos: `<video_dir>/<video_id>.mp4`.

Output (`<output_dir>/data/{train,val,test}-NNNNN.parquet` + README.md): val/test in the EVAL row schema with all
20 references; train as TRAINING rows, one per (video, caption) (see `caption_benchmarks`). Each split is its own
config: `load_dataset(out, "test", split="test")`.

    python -m datasets_scripts.build_msrvtt --annotations train_val_videodatainfo.json test_videodatainfo.json \
        --video_dir MSRVTT/videos/all --output_dir out/msrvtt
"""

import argparse
import json
from collections import defaultdict

from datasets_scripts.caption_benchmarks import add_common_args, write_benchmark


EXPECTED = {"train": 6513, "val": 497, "test": 2990}
_SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def read_msrvtt(annotation_files: list[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """`{split: [(video_id, [captions in sen_id order])]}` from MSR-VTT `*_videodatainfo.json` files."""
    split_of, caps = {}, defaultdict(list)
    for path in annotation_files:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        for v in data["videos"]:
            split_of[v["video_id"]] = _SPLIT_NAMES[v["split"]]
        for s in data["sentences"]:
            caps[s["video_id"]].append((s.get("sen_id", 0), " ".join(s["caption"].split())))
    out = defaultdict(list)
    for vid in sorted(split_of, key=lambda v: int(v[5:]) if v[5:].isdigit() else v):
        out[split_of[vid]].append((vid, [c for _, c in sorted(caps[vid])]))
    return dict(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.build_msrvtt",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--annotations", nargs="+", required=True, help="train_val_videodatainfo.json test_videodatainfo.json"
    )
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    splits = read_msrvtt(args.annotations)
    body = """# MSR-VTT (captioning split)

Original MSR-VTT captioning split (6513 train / 497 val / 2990 test videos, 20 references each), built with
`python -m datasets_scripts.build_msrvtt`. Frames: uniformly sampled by timestamp over the whole video, JPEG, short
side 256. MSR-VTT is released by Microsoft for research; the videos come from YouTube and keep their owners' rights."""
    return write_benchmark("msrvtt", splits, args, EXPECTED, body)


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
