"""CIDEr-D metric module (offline `evaluate.load`) vs pycocoevalcap called directly; the evaluation entry point."""

import json
import os
import shutil

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC = os.path.join(REPO, "train", "metrics", "cider_d")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTB tokenisation and METEOR need Java")

PREDICTIONS = [
    "a man is playing a guitar",
    "a woman is cooking in the kitchen",
    "a dog runs on the grass",
    "two people talk",
    "a car is driving down the road.",
    "",
]
REFERENCES = [
    ["a man plays the guitar", "someone is playing a guitar", "a man is playing guitar on stage"],
    ["a woman cooks food", "a lady is cooking", "a woman is preparing food in a kitchen"],
    ["a dog is running", "a dog runs across a field of grass"],
    ["two men are talking", "people are having a conversation", "two people talk to each other"],
    ["a car drives on a road", "a red car is driving", "a vehicle moves down the street"],
    ["a cat sleeps", "a cat is sleeping on a sofa"],
]


def _direct_pycocoevalcap(predictions, references):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    res = {i: caps or [""] for i, caps in res.items()}
    return {
        "CIDEr-D": Cider().compute_score(gts, res)[0],
        "BLEU-4": Bleu(4).compute_score(gts, res, verbose=0)[0][3],
        "METEOR": Meteor().compute_score(gts, res)[0],
        "ROUGE-L": Rouge().compute_score(gts, res)[0],
    }


@needs_java
def test_metric_module_loads_offline_and_matches_pycocoevalcap():
    import evaluate

    metric = evaluate.load(METRIC)
    ours = metric.compute(predictions=PREDICTIONS, references=REFERENCES)
    direct = _direct_pycocoevalcap(PREDICTIONS, REFERENCES)
    assert set(ours) == {"CIDEr-D", "BLEU-4", "METEOR", "ROUGE-L"}
    for name, value in direct.items():
        assert ours[name] == pytest.approx(float(value), abs=1e-9), name
    assert 0 < ours["CIDEr-D"] < 10
    # a perfect caption set scores higher than the noisy one, and CIDEr-D is a whole-split statistic:
    perfect = metric.compute(predictions=[refs[0] for refs in REFERENCES], references=REFERENCES, metrics=["CIDEr-D"])
    assert perfect["CIDEr-D"] > ours["CIDEr-D"]
    halves = [
        metric.compute(predictions=PREDICTIONS[s], references=REFERENCES[s], metrics=["CIDEr-D"])["CIDEr-D"]
        for s in (slice(0, 3), slice(3, 6))
    ]
    assert sum(halves) / 2 != pytest.approx(ours["CIDEr-D"], abs=1e-6)


def test_metric_rejects_bad_input():
    from train.metrics.cider_d.cider_d import coco_scores

    with pytest.raises(ValueError):
        coco_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        coco_scores(["a"], [[]])
    with pytest.raises(ValueError):
        coco_scores(["a"], [["a"]], metrics=["SPICE"])


@needs_java
def test_evaluate_captions_writes_results_json(tmp_path, tiny_model_dir):
    from train.data import write_parquet_shard
    from train.evaluate_captions import main
    from train.shapes import eval_rows

    rows = eval_rows(7, seed=1)
    rows[2]["frames"] = [b"corrupt"]
    write_parquet_shard(tmp_path / "test-00000.parquet", rows[:4])
    write_parquet_shard(tmp_path / "test-00001.parquet", rows[4:])
    out = tmp_path / "eval" / "eval_results.json"
    results = main(["--model", tiny_model_dir, "--data_files", str(tmp_path / "test-*.parquet"),
                    "--dataset_name", "shapes", "--split", "test", "--output_json", str(out), "--batch_size", "3",
                    "--max_new_tokens", "8"])  # fmt: skip
    on_disk = json.loads(out.read_text())
    assert on_disk == results
    assert on_disk["dataset_name"] == "shapes" and on_disk["split"] == "test"
    assert on_disk["num_videos"] == 6 and on_disk["num_skipped_corrupt"] == 1
    assert set(on_disk["metrics"]) == {"CIDEr-D", "BLEU-4", "METEOR", "ROUGE-L"}
    assert on_disk["generation"] == {"max_new_tokens": 8, "num_beams": 1, "do_sample": False}
    assert on_disk["model_path"] == os.path.abspath(tiny_model_dir) and on_disk["metric_scale"] == 100
    predictions = [json.loads(line) for line in open(on_disk["predictions_file"])]
    assert [p["id"] for p in predictions] == [r["id"] for i, r in enumerate(rows) if i != 2]
    assert all(isinstance(p["prediction"], str) for p in predictions)
