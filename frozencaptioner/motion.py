"""Motion scores: does a captioner read the direction of motion from the frames, or guess it?

Shared by the embedded demo (`train/demo.py`), its tests and the benchmarks. A caption's *motion word* is its first
word among `MOTION_WORDS`; a caption without one has none (and counts as wrong).

- `motion_accuracy`: the fraction of ALL clips whose predicted motion word equals the reference's;
- `flip_fraction`: the fraction of ALL clips whose predicted direction flips (left <-> right, up <-> down) when the
  clip's sampled frames are played backwards. A model blind to frame order scores 0 (its caption does not change);
  one that reads motion scores close to its accuracy squared.
"""

import json
import re


MOTION_WORDS = ("left", "right", "up", "down", "still")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_WORD = re.compile(r"[a-z]+")


def motion_word(caption: str | None) -> str | None:
    """The first of `MOTION_WORDS` in `caption` (lower-cased, whole words), or None."""
    for word in _WORD.findall((caption or "").lower()):
        if word in MOTION_WORDS:
            return word
    return None


def reference_motion(references: list[str]) -> str:
    """The motion word the references agree on; raises if they disagree or have none (a reference-set bug)."""
    words = {motion_word(r) for r in references}
    if len(words) != 1 or None in words:
        raise ValueError(f"references must share exactly one motion word, got {sorted(map(str, words))}: {references}")
    return words.pop()


def motion_accuracy(predictions: list[str | None], references: list[list[str]]) -> float:
    """Fraction of clips whose prediction's motion word is the references'; a prediction with none is wrong."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        raise ValueError("no clips to score")
    hits = sum(motion_word(p) == reference_motion(r) for p, r in zip(predictions, references))
    return hits / len(predictions)


def flip_fraction(forward: list[str | None], backward: list[str | None]) -> float:
    """Fraction of clips whose predicted direction on the reversed frames is the opposite of the one on the frames
    in order (a clip with no direction word in either prediction does not count as flipped)."""
    if len(forward) != len(backward):
        raise ValueError(f"{len(forward)} forward predictions for {len(backward)} backward ones")
    if not forward:
        raise ValueError("no clips to score")
    flips = 0
    for f, b in zip(forward, backward):
        before, after = motion_word(f), motion_word(b)
        flips += before in OPPOSITE and OPPOSITE[before] == after
    return flips / len(forward)


def read_predictions(path: str) -> dict[str, dict]:
    """`train/evaluate_captions.py`'s predictions JSONL -> {id: {"prediction", "references"}}."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row["id"]: row for row in rows}


def motion_scores(
    all_frames: str, one_frame: str, reversed_frames: str, control: str | None = None, ids: list[str] | None = None
) -> dict:
    """Motion scores from predictions files of the same held-out clips: the model on all frames, with
    `--num_frames 1`, with `--reverse_frames`, and optionally a control trained at T=1 (scored at T=1).

    `ids` (default: the all-frames file's) are ALL held-out clips: a clip missing from a file (skipped as corrupt)
    counts as wrong, not as absent."""
    files = {"all": all_frames, "one": one_frame, "rev": reversed_frames, "control": control}
    runs = {name: read_predictions(path) for name, path in files.items() if path}
    ids = list(ids or runs["all"])
    missing = [i for i in ids if i not in runs["all"]]
    if missing:
        raise ValueError(f"{len(missing)} ids have no all-frames prediction, e.g. {missing[:3]}")
    refs = [runs["all"][i]["references"] for i in ids]

    def preds(name):
        return [runs[name].get(i, {}).get("prediction") for i in ids]

    scores = {
        "motion_accuracy_all_frames": motion_accuracy(preds("all"), refs),
        "motion_accuracy_one_frame": motion_accuracy(preds("one"), refs),
        "direction_flip_fraction": flip_fraction(preds("all"), preds("rev")),
        "num_clips": len(ids),
    }
    scores["all_minus_one_frame"] = scores["motion_accuracy_all_frames"] - scores["motion_accuracy_one_frame"]
    if control:
        scores["motion_accuracy_control_trained_one_frame"] = motion_accuracy(preds("control"), refs)
    return scores
