"""MSVD (YouTube2Text) captioning benchmark (split 1200 train / 100 val / 670 test, ~40 English references).

Annotation file: the standard `MSR Video Description Corpus.csv` (columns `VideoID, Start, End, WorkerID, Source,
AnnotationTime, Language, Description`); only `Language == English` rows are kept. A clip is
`<VideoID>_<Start>_<End>` (also its video file name, `<video_dir>/<VideoID>_<Start>_<End>.avi`).
Split (Venugopalan et al. 2015, used by all captioning papers): with `--mapping youtube_mapping.txt` (lines
`<clip name> vid<N>`), vid1-vid1200 train, vid1201-vid1300 val, vid1301-vid1970 test; without a mapping, clips are
numbered in order of first appearance in the CSV (which is how the mapping was made) and split 1200/100/rest.

    python -m datasets_scripts.build_msvd --annotations "MSR Video Description Corpus.csv" \
        --mapping youtube_mapping.txt --video_dir YouTubeClips --output_dir out/msvd
"""

import argparse
import csv
from collections import defaultdict

from datasets_scripts.caption_benchmarks import add_common_args, write_benchmark


EXPECTED = {"train": 1200, "val": 100, "test": 670}


def read_msvd(csv_path: str, mapping_path: str | None = None) -> dict[str, list[tuple[str, list[str]]]]:
    """`{split: [(clip_name, [English descriptions])]}`."""
    refs, order = defaultdict(list), []
    with open(csv_path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            name = f"{row['VideoID']}_{row['Start']}_{row['End']}"
            if name not in refs:
                order.append(name)
                refs[name]  # noqa: B018 - register the clip even if it has no English description
            if (row.get("Language") or "").strip().lower() == "english" and (row.get("Description") or "").strip():
                refs[name].append(" ".join(row["Description"].split()))
    if mapping_path:
        number = {}
        with open(mapping_path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    number[parts[0]] = int(parts[1].replace("vid", ""))
        ranked = sorted((number[n], n) for n in order if n in number)
    else:
        ranked = list(enumerate(order, start=1))
    out = defaultdict(list)
    for num, name in ranked:
        split = "train" if num <= 1200 else ("val" if num <= 1300 else "test")
        if refs[name]:
            out[split].append((name, refs[name]))
    return dict(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m datasets_scripts.build_msvd",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--annotations", required=True, help="MSR Video Description Corpus.csv")
    p.add_argument("--mapping", default=None, help="youtube_mapping.txt (clip name -> vidN)")
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    splits = read_msvd(args.annotations, args.mapping)
    body = """# MSVD (YouTube2Text)

Standard captioning split (1200 / 100 / 670 clips), English references only (~40 per clip), built with
`python -m datasets_scripts.build_msvd`. Frames: uniformly sampled by timestamp over the whole clip, JPEG, short
side 256. The clips come from YouTube and keep their owners' rights; MSVD annotations are research-only."""
    return write_benchmark("msvd", splits, args, EXPECTED, body)


def cli() -> None:
    """Console-script entry point (`main` returns a summary; a console script must return None for exit 0)."""
    main()


if __name__ == "__main__":
    cli()
