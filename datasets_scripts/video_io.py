"""Timestamp-based video I/O shared by the pseudolabeler, the dataset builders and training.

Everything here works in **seconds on the presentation timeline of the first video stream, measured from the
stream's start** (`t = 0` is the stream's `start_time`), never in frame indices: variable-frame-rate files and MP4 edit
lists (trimmed files) make "frame i" ambiguous, and decord is known to miscount frames on trimmed files.

"The frame displayed at t" is the last frame whose presentation timestamp is `<= t` (the frame on screen during
`[pts_i, pts_{i+1})`); a `t` before the first frame gives the first frame and a `t` after the last gives the last.

Backends for `read_frames_at` (all of them *seek*; none decodes the whole file):

* `"decord"`: `VideoReader.get_frame_timestamp` -> pick indices by timestamp -> `get_batch`. decord returns a
  shifted frame in the first GOP of edit-list files (frames with negative timestamps). We detect those files
  (negative first timestamp) and raise `VideoDecodeError(reason="decord_edit_list")` instead of a wrong frame.
  decord also seeks to wrong frames in MPEG-TS/PS (no index); those extensions raise `decord_unindexed_container`.
* `"pyav"`: `container.seek(pts, backward=True)` to the keyframe at or before the target, then decode forward until
  the first frame with pts > target; the frame before it is the answer.
* `"torchcodec"`: `VideoDecoder(...).get_frames_played_at(seconds)` (exact seek mode).
* `"auto"` (default): decord (the design's choice, fastest seeks), falling back to PyAV then torchcodec when decord is
  not installed or fails.

Only numpy is imported at module import time; decoders, PIL and torch are imported lazily.
"""

import io
import os
from dataclasses import dataclass

import numpy as np


BACKENDS = ("decord", "pyav", "torchcodec")
# containers without a seek index: decord returned frames ~2 s off on MPEG-TS in our checks; PyAV/torchcodec are right
_DECORD_UNRELIABLE_EXT = {".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob", ".m2v"}
_EPS = 1e-6


class VideoDecodeError(Exception):
    """A video (or image) could not be read.

    Attributes:
        path (`str`): the input.
        reason (`str`): short machine-friendly cause: `missing`, `empty`, `unreadable`, `corrupt`,
            `no_video_stream`, `no_frames`, `no_duration`, `decord_edit_list`, `backend_unavailable`, `download_failed`.
        detail (`str`): human-readable detail (exception text).
    """

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass
class VideoInfo:
    """Container/stream facts of a video, from timestamps (not frame counts)."""

    path: str
    duration: float
    fps: float | None
    width: int
    height: int


def _check_file(path: str) -> None:
    if isinstance(path, str) and "://" in path:
        return
    if not os.path.exists(path):
        raise VideoDecodeError(path, "missing")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "unreadable", "is a directory")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(path, "unreadable", "permission denied")


def _open_pyav(path: str):
    import av

    _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except PermissionError as e:
        raise VideoDecodeError(path, "unreadable", str(e)) from e
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoDecodeError(path, "corrupt", f"{type(e).__name__}: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no_video_stream")
    return container


def probe_video(path: str) -> VideoInfo:
    """Read duration, frame rate and size of the first video stream (PyAV, demux only, no decoding).

    Duration comes from the stream's own duration (stream time base), else the container's duration, else the
    largest `pts + duration` over all demuxed packets. Raises `VideoDecodeError`.
    """
    import av

    container = _open_pyav(path)
    try:
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None and container.duration > 0:
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            c_start = container.start_time / 1e6 if container.start_time is not None else 0.0
            duration = container.duration / 1e6 - max(0.0, start - c_start)
        else:  # e.g. some WebM/MKV/MPEG-TS: scan packet timestamps (demux only)
            start = stream.start_time or 0
            end = None
            try:
                for packet in container.demux(stream):
                    if packet.pts is not None:
                        e = packet.pts + (packet.duration or 0)
                        end = e if end is None else max(end, e)
            except av.error.FFmpegError:
                pass
            if end is not None:
                duration = float((end - start) * stream.time_base)
        if duration is None or not duration > 0:
            raise VideoDecodeError(path, "no_duration")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:  # some containers (e.g. MPEG-TS) only know the size after decoding a frame
            try:
                container.seek(0)
                frame = next(container.decode(stream), None)
            except (av.error.FFmpegError, StopIteration):
                frame = None
            if frame is None:
                raise VideoDecodeError(path, "corrupt", "zero frame size and no decodable frame")
            width, height = frame.width, frame.height
        return VideoInfo(path=str(path), duration=duration, fps=fps, width=int(width), height=int(height))
    finally:
        container.close()


def clip_spans(
    duration: float, clip_seconds: float = 8.0, min_last_clip: float | None = None
) -> list[tuple[float, float]]:
    """Cut `[0, duration)` into consecutive `[start, end)` spans of `clip_seconds`, by timestamp.

    Rule for the remainder `r = duration - n * clip_seconds` after `n` full clips:
    * `n == 0` (video shorter than one clip): one clip `[0, duration)`;
    * `r >= min_last_clip`: the remainder is its own, shorter, last clip `[n * clip_seconds, duration)`;
    * `0 < r < min_last_clip`: the remainder is merged into the previous clip, which becomes
      `[(n - 1) * clip_seconds, duration)`.
    With the default `min_last_clip = clip_seconds / 2`, every clip lasts between half and one and a half
    `clip_seconds` (except videos shorter than half a clip, which give one clip). Remainders under 1 µs are ignored.

    Args:
        duration (`float`): video duration in seconds (`probe_video(...).duration`).
        clip_seconds (`float`, *optional*, defaults to 8.0): clip length (the paper's 8 s).
        min_last_clip (`float`, *optional*): shortest remainder kept as its own clip; default `clip_seconds / 2`.
    """
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    if min_last_clip is None:
        min_last_clip = clip_seconds / 2
    if not duration > 0:
        return []
    n_full = int((duration + _EPS) // clip_seconds)
    spans = [(i * clip_seconds, (i + 1) * clip_seconds) for i in range(n_full)]
    remainder = duration - n_full * clip_seconds
    if n_full == 0:
        return [(0.0, float(duration))]
    if remainder > _EPS:
        if remainder >= min_last_clip:
            spans.append((n_full * clip_seconds, float(duration)))
        else:
            spans[-1] = (spans[-1][0], float(duration))
    else:
        spans[-1] = (spans[-1][0], float(duration))
    return [(float(s), float(e)) for s, e in spans]


def uniform_timestamps(start: float, end: float, num_frames: int) -> list[float]:
    """Centers of `num_frames` equal sub-intervals of `[start, end)`; `num_frames=1` gives the clip's center."""
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    step = (end - start) / num_frames
    return [start + (i + 0.5) * step for i in range(num_frames)]


def _pick_displayed(frame_starts: np.ndarray, t: float) -> int:
    """Index of the last frame whose start time is <= t (clamped to [0, n-1])."""
    i = int(np.searchsorted(frame_starts, t + _EPS, side="right")) - 1
    return min(max(i, 0), len(frame_starts) - 1)


def _read_decord(path: str, timestamps: list[float]) -> np.ndarray:
    try:
        import decord
    except ImportError as e:
        raise VideoDecodeError(path, "backend_unavailable", "decord not installed") from e
    _check_file(path)
    if os.path.splitext(str(path))[1].lower() in _DECORD_UNRELIABLE_EXT:
        raise VideoDecodeError(path, "decord_unindexed_container", "decord seeks to wrong frames in MPEG-TS/PS")
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        if n == 0:
            raise VideoDecodeError(path, "no_frames")
        ts = np.asarray(vr.get_frame_timestamp(range(n)), dtype=np.float64)[:, 0]
        if ts[0] < -_EPS:
            # MP4 edit list: decord indexes the discarded pre-roll frames but its decoder drops them, so indices in
            # the first GOP point at later frames. Refuse rather than return a wrong frame.
            raise VideoDecodeError(path, "decord_edit_list", f"first frame timestamp {ts[0]:.3f} < 0")
        order = np.argsort(ts, kind="stable")  # decord lists frames in decode order for B-frame streams? be safe
        ts_sorted = ts[order]
        origin = ts_sorted[0]
        indices = [int(order[_pick_displayed(ts_sorted, origin + t)]) for t in timestamps]
        frames = vr.get_batch(indices).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as e:  # decord raises DECORDError / RuntimeError subclasses
        raise VideoDecodeError(path, "corrupt", f"decord: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _read_pyav(path: str, timestamps: list[float], forward_decode_seconds: float = 0.5) -> np.ndarray:
    """Seek + decode forward. Targets are visited in sorted order; a target less than `forward_decode_seconds`
    ahead of the current position is reached by decoding forward instead of seeking again."""
    import av

    container = _open_pyav(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        out: list = [None] * len(timestamps)
        order = sorted(range(len(timestamps)), key=lambda i: timestamps[i])

        def frame_time(frame) -> float:
            return frame.pts * tb

        def seek_to(t_abs: float):
            if t_abs <= origin + _EPS:  # start of file: also right for edit lists (pre-roll before t=0)
                container.seek(0, backward=True, any_frame=False)
            else:
                container.seek(max(0, int(t_abs / tb)), stream=stream, backward=True, any_frame=False)
            return container.decode(stream)

        iterator, last, ahead, exhausted = None, None, None, False
        for idx in order:
            target = origin + float(timestamps[idx])
            here = frame_time(last) if last is not None else (frame_time(ahead) if ahead is not None else None)
            if iterator is None or here is None or target < here - _EPS or target - here > forward_decode_seconds:
                back = 0.0
                while True:  # seek, and step further back if the demuxer landed after the target
                    iterator, last, ahead, exhausted = seek_to(target - back), None, None, False
                    first, at_start = None, target - back <= origin + _EPS
                    for frame in iterator:
                        # after a seek into the middle, skip frames before the first keyframe: demuxers without an index
                        # (MPEG-TS) can land mid-GOP and the decoder then emits broken frames. From the start of the file
                        # the first frame is right even when it is not a keyframe (edit lists drop the pre-roll).
                        if frame.pts is not None and (frame.key_frame or at_start):
                            first = frame
                            break
                    if first is None:
                        if at_start:
                            exhausted = True
                            break
                        back = max(1.0, 2 * back)  # landed after the last keyframe before the target
                        continue
                    if frame_time(first) <= target + _EPS or at_start:
                        if frame_time(first) <= target + _EPS:
                            last = first
                        else:
                            ahead = first
                        break
                    back = max(1.0, 2 * back)
            if ahead is not None and frame_time(ahead) <= target + _EPS:
                last, ahead = ahead, None
            while ahead is None and not exhausted:
                try:
                    frame = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                if frame.pts is None:
                    continue
                if frame_time(frame) <= target + _EPS:
                    last = frame
                else:
                    ahead = frame
            chosen = last if last is not None else ahead
            if chosen is None:
                raise VideoDecodeError(path, "no_frames", f"nothing decoded near t={timestamps[idx]:.3f}")
            out[idx] = chosen.to_ndarray(format="rgb24")
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(path, "corrupt", f"pyav: {type(e).__name__}: {e}") from e
    finally:
        container.close()
    return np.stack(out).astype(np.uint8, copy=False)


def _read_torchcodec(path: str, timestamps: list[float]) -> np.ndarray:
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # ImportError, or torchcodec failing to load its FFmpeg libraries
        raise VideoDecodeError(path, "backend_unavailable", f"torchcodec: {e}") from e
    _check_file(path)
    try:
        decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC")
        meta = decoder.metadata
        begin = float(meta.begin_stream_seconds or 0.0)
        end = float(meta.end_stream_seconds) if meta.end_stream_seconds is not None else None
        # get_frames_played_at needs t < end_stream_seconds, which torchcodec sets to the last frame's *start* on some
        # files; timestamps at or past it are served with the last frame by index instead
        query = [max(begin, begin + float(t) + _EPS) for t in timestamps]  # same boundary tolerance as other backends
        inside = [i for i, q in enumerate(query) if end is None or q < end - 1e-6]
        frames = np.empty((len(query), meta.height, meta.width, 3), dtype=np.uint8)
        if inside:
            frames[inside] = decoder.get_frames_played_at([query[i] for i in inside]).data.numpy()
        outside = [i for i in range(len(query)) if i not in set(inside)]
        if outside:
            frames[outside] = decoder.get_frame_at(len(decoder) - 1).data.numpy()[None]
    except Exception as e:
        raise VideoDecodeError(path, "corrupt", f"torchcodec: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(frames, dtype=np.uint8)


_READERS = {"decord": _read_decord, "pyav": _read_pyav, "torchcodec": _read_torchcodec}


def read_frames_at(path: str, timestamps: list[float], backend: str = "auto") -> np.ndarray:
    """Decode, by seeking, the frame displayed at each timestamp (seconds from the stream start).

    Args:
        path (`str`): local video file.
        timestamps (`list[float]`): any order, duplicates allowed.
        backend (`str`, *optional*, defaults to `"auto"`): `"decord"`, `"pyav"`, `"torchcodec"` or `"auto"`
            (decord, then PyAV, then torchcodec on failure / when unavailable).

    Returns:
        `np.ndarray` of shape `(len(timestamps), H, W, 3)`, uint8 RGB.

    Raises:
        `VideoDecodeError` (`.reason` says why); with `"auto"`, the first non-"backend_unavailable" error if every
        backend failed.
    """
    if len(timestamps) == 0:
        raise ValueError("timestamps is empty")
    if backend != "auto":
        if backend not in _READERS:
            raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {backend!r}")
        return _READERS[backend](path, list(timestamps))
    _check_file(path)
    errors = []
    for name in BACKENDS:
        try:
            return _READERS[name](path, list(timestamps))
        except VideoDecodeError as e:
            errors.append(e)
            if e.reason in ("missing", "empty", "unreadable"):
                break
    real = [e for e in errors if e.reason != "backend_unavailable"]
    # prefer the PyAV diagnosis (it knows "no_video_stream"), else the first real one
    for e in real:
        if "pyav" in e.detail or e.reason in ("no_video_stream", "missing", "empty", "unreadable", "no_frames"):
            raise e
    raise (real or errors)[0]


def read_image(path_or_bytes) -> np.ndarray:
    """Read an image (path, bytes, or a PIL image) as uint8 RGB `(H, W, 3)`. Images are 1-frame videos."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(path_or_bytes, Image.Image):
            img = path_or_bytes
        elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            if len(path_or_bytes) == 0:
                raise VideoDecodeError("<bytes>", "empty")
            img = Image.open(io.BytesIO(bytes(path_or_bytes)))
        else:
            _check_file(path_or_bytes)
            img = Image.open(path_or_bytes)
        img.load()
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except VideoDecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        name = path_or_bytes if isinstance(path_or_bytes, str) else "<bytes>"
        raise VideoDecodeError(name, "corrupt", f"{type(e).__name__}: {e}") from e


def resize_frame(frame: np.ndarray, size: int | tuple[int, int], mode: str = "short_side") -> np.ndarray:
    """Resize one uint8 RGB frame with PIL bicubic.

    Args:
        size: `mode="short_side"`: target short side (aspect kept; never upscales); `mode="exact"`: `(width, height)`
            or an int for a square (aspect not kept, as BLIP's processor does).
    """
    from PIL import Image

    h, w = frame.shape[:2]
    if mode == "short_side":
        if min(h, w) <= size:
            return frame
        scale = size / min(h, w)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
    elif mode == "exact":
        new = (size, size) if isinstance(size, int) else tuple(size)
        if new == (w, h):
            return frame
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return np.asarray(Image.fromarray(frame).resize(new, Image.BICUBIC))


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """uint8 RGB frame -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


__all__ = [
    "BACKENDS",
    "VideoDecodeError",
    "VideoInfo",
    "probe_video",
    "clip_spans",
    "uniform_timestamps",
    "read_frames_at",
    "read_image",
    "resize_frame",
    "encode_jpeg",
]
