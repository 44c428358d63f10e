"""Training/eval dataset builders: pseudolabel clips, HowTo100M ASR, LAION-style, MSR-VTT, MSVD."""

import io
import json
import os
import time

import numpy as np
import pytest

from datasets_scripts.synthetic import decode_frame_index, make_corrupt_files, make_test_video
from datasets_scripts.video_io import probe_video, uniform_timestamps


def _load(out_dir, config=None, split="train"):
    import datasets

    cache = os.path.join(str(out_dir), "..", f"hf_cache_{time.time_ns()}")
    return datasets.load_dataset(str(out_dir), config, split=split, cache_dir=cache)


def _jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _displayed(times, t):
    return int(np.searchsorted(np.array(times), t + 1e-6, side="right")) - 1


def _assert_train_features(ds):
    f = ds.features
    assert ds.column_names == ["id", "frames", "caption", "source"]
    assert f["id"].dtype == "string" and f["caption"].dtype == "string" and f["source"].dtype == "string"
    assert "binary" in str(f["frames"])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from frozencaptioner.tiny_teacher import build_tiny_blip

    return build_tiny_blip(str(tmp_path_factory.mktemp("tiny_blip")))


def test_tiny_teacher_is_a_real_blip(teacher):
    from transformers import AutoModelForImageTextToText, AutoProcessor, BlipForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(teacher)
    processor = AutoProcessor.from_pretrained(teacher)
    assert isinstance(model, BlipForConditionalGeneration)
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids("[DEC]") == model.config.text_config.bos_token_id
    assert tok.sep_token_id == model.config.text_config.sep_token_id and tok.pad_token_id == 0
    inputs = processor(images=[np.zeros((90, 120, 3), np.uint8)], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 320, 320)
    out = model.generate(**inputs, do_sample=True, top_p=0.9, num_beams=1, max_new_tokens=5)
    assert out[0, 0].item() == model.config.text_config.bos_token_id
    assert isinstance(processor.batch_decode(out, skip_special_tokens=True)[0], str)


# ---------------------------------------------------------------- (a) pseudolabels -> training clips


def test_build_video_clips_from_pseudolabels(tmp_path, teacher):
    from datasets_scripts import build_video_clips, pseudolabel

    vids = tmp_path / "videos"
    times = make_test_video(str(vids / "a.mp4"), seconds=13, fps=10)
    make_test_video(str(vids / "b.mp4"), seconds=5, fps=10, vfr=True)
    pl = tmp_path / "pl"
    pseudolabel.main(
        ["--input", str(vids), "--output_dir", str(pl), "--teacher", teacher, "--clip_seconds", "4",
         "--num_workers", "0", "--max_new_tokens", "5", "--no_progress"]
    )  # fmt: skip
    labels = _load(pl)
    out = tmp_path / "clips"
    n = build_video_clips.main(["--input", str(pl), "--output_dir", str(out), "--num_frames", "4",
                                "--short_side", "48", "--num_workers", "1"])  # fmt: skip
    ds = _load(out)
    _assert_train_features(ds)
    assert n == len(ds) == len(labels) == 3 + 1
    by_id = {r["id"]: r for r in ds}
    for lab in labels:
        row = by_id[f"{lab['video_id']}_{lab['clip_index']:05d}"]
        assert row["caption"] == lab["caption"] and row["source"] == f"pseudolabel:{teacher}"
        assert len(row["frames"]) == 4
        frames = [_jpeg(b) for b in row["frames"]]
        assert all(min(f.shape[:2]) == 48 for f in frames)
        if lab["video_id"] == "a":  # frames are the ones displayed at uniform timestamps inside the clip
            want = [_displayed(times, t) for t in uniform_timestamps(lab["start"], lab["end"], 4)]
            assert [decode_frame_index(f) for f in frames] == want
    assert "configs:" in (out / "README.md").read_text()


# ---------------------------------------------------------------- (b) HowTo100M ASR


def test_join_asr_segments_rule():
    from datasets_scripts.build_howto100m_asr import join_asr_segments

    starts = [0.0, 2.5, 5.0, 9.0, 11.0, 30.0, 50.0]
    ends = [2.5, 5.0, 8.5, 11.0, 14.0, 45.0, 52.0]
    texts = ["a", "b", "c", "d", "e", "long one", "  tail   words "]
    clips = join_asr_segments(starts, ends, texts, 8.0)
    assert clips == [(0.0, 8.5, "a b c"), (9.0, 45.0, "d e long one"), (50.0, 52.0, "tail words")]
    # unsorted input, empty texts dropped
    assert join_asr_segments([5, 0], [9, 4], ["y", ""], 8.0) == [(5.0, 9.0, "y")]
    assert join_asr_segments([], [], []) == []


def test_build_howto100m_asr(tmp_path):
    from datasets_scripts import build_howto100m_asr

    vids = tmp_path / "videos"
    times = make_test_video(str(vids / "v1.mp4"), seconds=20, fps=5, size=(64, 48))
    make_corrupt_files(str(tmp_path / "bad"))
    os.replace(tmp_path / "bad" / "garbage.mp4", vids / "v3.mp4")
    captions = {
        "v1": {"start": [0, 3, 6, 10, 15], "end": [3, 6, 9, 14, 25], "text": ["one", "two", "three", "four", "five"]},
        "v2": {"start": [0], "end": [5], "text": ["no video file"]},
        "v3": {"start": [0], "end": [9], "text": ["corrupt"]},
    }
    (tmp_path / "caption.json").write_text(json.dumps(captions))
    out = tmp_path / "out"
    build_howto100m_asr.main(["--captions", str(tmp_path / "caption.json"), "--video_dir", str(vids),
                              "--output_dir", str(out), "--num_frames", "2", "--num_workers", "1"])  # fmt: skip
    ds = _load(out)
    _assert_train_features(ds)
    assert ds["id"] == ["v1_00000", "v1_00001"]
    assert ds["caption"] == ["one two three", "four five"]
    assert set(ds["source"]) == {"howto100m_asr"}
    # second clip [10, 25) is clamped to the 20 s video: frames at uniform timestamps of [10, 20)
    got = [decode_frame_index(_jpeg(b)) for b in ds[1]["frames"]]
    assert got == [_displayed(times, t) for t in uniform_timestamps(10, probe_video(str(vids / "v1.mp4")).duration, 2)]
    errors = {e["video_id"]: e["reason"] for e in map(json.loads, open(out / "errors.jsonl"))}
    assert errors == {"v2": "missing", "v3": "corrupt"}


# ---------------------------------------------------------------- (c) LAION-style


def _png(w, h, color):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def test_build_laion_english_filter_and_split_by_node(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datasets_scripts import build_laion

    rows = [
        ("a dog running on the beach at sunset", _png(400, 300, (255, 0, 0))),
        ("un chien qui court sur la plage au coucher du soleil", _png(40, 30, (0, 255, 0))),
        ("ein Hund, der bei Sonnenuntergang am Strand läuft", _png(40, 30, (0, 0, 255))),
        ("a red car parked in front of an old house", _png(300, 500, (10, 20, 30))),
        ("a broken image that cannot be decoded at all", b"not an image"),
        ("", _png(40, 30, (0, 0, 0))),
        ("two people cooking pasta in a small kitchen", _png(256, 256, (100, 100, 100))),
        ("close up of a cat sleeping on a sofa", _png(640, 480, (50, 60, 70))),
    ]
    src = tmp_path / "img2dataset"
    src.mkdir()
    table = pa.table(
        {
            "key": [f"{i:09d}" for i in range(len(rows))],
            "caption": [c for c, _ in rows],
            "jpg": [b for _, b in rows],
            "url": [f"http://127.0.0.1:9/{i}.jpg" for i in range(len(rows))],
        }
    )
    pq.write_table(table, src / "00000.parquet")
    out = tmp_path / "out"
    counts = [
        build_laion.main(
            [
                "--input",
                str(src),
                "--input_format",
                "parquet",
                "--output_dir",
                str(out),
                "--shard_id",
                str(r),
                "--num_shards",
                "2",
            ]
        )  # fmt: skip
        for r in (0, 1)
    ]
    ds = _load(out)
    _assert_train_features(ds)
    english = {"000000000", "000000003", "000000006", "000000007"}
    assert sorted(ds["id"]) == sorted(english)  # each English row exactly once across the two shards
    assert sum(c["seen"] for c in counts) == len(rows)  # split_dataset_by_node: disjoint and complete
    assert all(c["seen"] < len(rows) for c in counts)
    assert sum(c["non_english"] for c in counts) == 2 and sum(c["bad_image"] for c in counts) == 1
    for r in ds:
        assert len(r["frames"]) == 1 and r["source"] == "laion"
        img = _jpeg(r["frames"][0])
        assert min(img.shape[:2]) == 256 or r["id"] == "000000006"
    errors = list(map(json.loads, open(out / "errors.jsonl")))
    assert len(errors) == 1 and errors[0]["reason"] == "corrupt"


def test_is_english():
    from datasets_scripts.build_laion import is_english

    assert is_english("a man riding a bicycle down a city street")
    assert not is_english("un homme qui fait du vélo dans une rue de la ville")
    assert not is_english("一个男人在城市街道上骑自行车")
    assert not is_english("   ")


# ---------------------------------------------------------------- (d) MSR-VTT / MSVD


def test_build_msrvtt_captioning_split(tmp_path):
    from datasets_scripts import build_msrvtt
    from datasets_scripts.build_msrvtt import read_msrvtt

    vdir = tmp_path / "videos"
    split_of = {"video0": "train", "video1": "train", "video2": "validate", "video3": "train", "video7010": "test"}
    for vid in split_of:
        if vid != "video3":  # video3 missing on disk
            make_test_video(str(vdir / f"{vid}.mp4"), seconds=2, fps=5, size=(64, 48))

    def info(vids):
        sents = [
            {"video_id": v, "caption": f"caption {k} of {v}", "sen_id": 1000 * i + (19 - k)}
            for i, v in enumerate(vids)
            for k in range(20)
        ]
        return {"videos": [{"video_id": v, "split": split_of[v], "id": i} for i, v in enumerate(vids)],
                "sentences": sents}  # fmt: skip

    (tmp_path / "train_val_videodatainfo.json").write_text(json.dumps(info(["video0", "video1", "video2", "video3"])))
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(info(["video7010"])))
    ann = [str(tmp_path / "train_val_videodatainfo.json"), str(tmp_path / "test_videodatainfo.json")]
    parsed = read_msrvtt(ann)
    assert {s: [v for v, _ in items] for s, items in parsed.items()} == {
        "train": ["video0", "video1", "video3"],
        "val": ["video2"],
        "test": ["video7010"],
    }
    out = tmp_path / "out"
    written = build_msrvtt.main(["--annotations", *ann, "--video_dir", str(vdir), "--output_dir", str(out),
                                 "--num_frames", "3", "--num_workers", "1"])  # fmt: skip
    assert written == {"train": 40, "val": 1, "test": 1}
    test = _load(out, "test", "test")
    assert test.column_names == ["id", "frames", "references"]
    assert test[0]["id"] == "video7010" and len(test[0]["frames"]) == 3
    # all 20 references, in sen_id order
    assert test[0]["references"] == [f"caption {k} of video7010" for k in range(19, -1, -1)]
    train = _load(out, "train", "train")
    _assert_train_features(train)
    assert sorted(set(i.split("#")[0] for i in train["id"])) == ["video0", "video1"]
    assert set(train["source"]) == {"msrvtt"}
    errors = list(map(json.loads, open(out / "errors.jsonl")))
    assert [(e["video_id"], e["reason"]) for e in errors] == [("video3", "missing")]


def test_build_msvd_standard_split(tmp_path):
    import csv

    from datasets_scripts import build_msvd

    vdir = tmp_path / "YouTubeClips"
    clips = [("abc", 1, 5, 1), ("def", 0, 4, 2), ("ghi", 3, 9, 1201), ("jkl", 2, 6, 1301), ("mno", 7, 12, 1970)]
    header = ["VideoID", "Start", "End", "WorkerID", "Source", "AnnotationTime", "Language", "Description"]
    with open(tmp_path / "corpus.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for vid, s, e, _ in clips:
            for k in range(40):
                w.writerow([vid, s, e, k, "clean", 10, "English", f"{vid} english description {k}"])
            w.writerow([vid, s, e, 99, "clean", 10, "French", f"{vid} une description"])
    (tmp_path / "youtube_mapping.txt").write_text("".join(f"{v}_{s}_{e} vid{n}\n" for v, s, e, n in clips))
    for vid, s, e, _ in clips:
        make_test_video(str(vdir / f"{vid}_{s}_{e}.avi"), seconds=2, fps=5, size=(64, 48), codec="mpeg4")
    out = tmp_path / "out"
    written = build_msvd.main(["--annotations", str(tmp_path / "corpus.csv"), "--mapping",
                               str(tmp_path / "youtube_mapping.txt"), "--video_dir", str(vdir),
                               "--output_dir", str(out), "--num_frames", "2", "--num_workers", "1",
                               "--train_layout", "per_video"])  # fmt: skip
    assert written == {"train": 2, "val": 1, "test": 2}
    val = _load(out, "val", "val")
    assert val["id"] == ["ghi_3_9"]
    assert val[0]["references"] == [f"ghi english description {k}" for k in range(40)]  # English only, all kept
    test = _load(out, "test", "test")
    assert sorted(test["id"]) == ["jkl_2_6", "mno_7_12"]
    train = _load(out, "train", "train")
    assert train.column_names == ["id", "frames", "references"]  # per_video layout
