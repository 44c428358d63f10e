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

import contextlib
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


@contextlib.contextmanager
def _pyav_errors(path: str):
    """PyAV / FFmpeg failures inside the block -> `VideoDecodeError(reason="corrupt")`."""
    import av

    try:
        yield
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(path, "corrupt", f"pyav: {type(e).__name__}: {e}") from e


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


def _open_decord(path: str):
    """-> (VideoReader, per-frame start times in index order, origin). Refuses the files decord gets wrong."""
    try:
        import decord
    except ImportError as e:
        raise VideoDecodeError(path, "backend_unavailable", "decord not installed") from e
    _check_file(path)
    if os.path.splitext(str(path))[1].lower() in _DECORD_UNRELIABLE_EXT:
        raise VideoDecodeError(path, "decord_unindexed_container", "decord seeks to wrong frames in MPEG-TS/PS")
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    n = len(vr)
    if n == 0:
        raise VideoDecodeError(path, "no_frames")
    # decord keeps timestamps as float32: round to the microsecond so times agree with the other backends
    ts = np.round(np.asarray(vr.get_frame_timestamp(range(n)), dtype=np.float64)[:, 0], 6)
    if ts[0] < -_EPS:
        # MP4 edit list: decord indexes the discarded pre-roll frames but its decoder drops them, so indices in
        # the first GOP point at later frames. Refuse rather than return a wrong frame.
        raise VideoDecodeError(path, "decord_edit_list", f"first frame timestamp {ts[0]:.3f} < 0")
    return vr, ts, float(ts.min())


def _read_decord(path: str, timestamps: list[float]) -> tuple[np.ndarray, list[float]]:
    try:
        vr, ts, origin = _open_decord(path)
        order = np.argsort(ts, kind="stable")  # decord lists frames in decode order for B-frame streams? be safe
        ts_sorted = ts[order]
        picks = [_pick_displayed(ts_sorted, origin + t) for t in timestamps]
        frames = vr.get_batch([int(order[i]) for i in picks]).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as e:  # decord raises DECORDError / RuntimeError subclasses
        raise VideoDecodeError(path, "corrupt", f"decord: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(frames, dtype=np.uint8), [float(ts_sorted[i] - origin) for i in picks]


def _read_pyav(
    path: str, timestamps: list[float], forward_decode_seconds: float = 0.5
) -> tuple[np.ndarray, list[float]]:
    """Seek + decode forward. Targets are visited in sorted order; a target less than `forward_decode_seconds`
    ahead of the current position is reached by decoding forward instead of seeking again."""

    container = _open_pyav(path)
    with container, _pyav_errors(path):
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        out: list = [None] * len(timestamps)
        out_times: list = [None] * len(timestamps)
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
            out_times[idx] = frame_time(chosen) - origin
    return np.stack(out).astype(np.uint8, copy=False), [float(t) for t in out_times]


def _read_torchcodec(path: str, timestamps: list[float]) -> tuple[np.ndarray, list[float]]:
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
        times = [0.0] * len(query)
        if inside:
            batch = decoder.get_frames_played_at([query[i] for i in inside])
            frames[inside] = batch.data.numpy()
            for i, pts in zip(inside, batch.pts_seconds.tolist()):
                times[i] = float(pts) - begin
        outside = [i for i in range(len(query)) if i not in set(inside)]
        if outside:
            last = decoder.get_frame_at(len(decoder) - 1)
            frames[outside] = last.data.numpy()[None]
            for i in outside:
                times[i] = float(last.pts_seconds) - begin
    except Exception as e:
        raise VideoDecodeError(path, "corrupt", f"torchcodec: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(frames, dtype=np.uint8), times


_READERS = {"decord": _read_decord, "pyav": _read_pyav, "torchcodec": _read_torchcodec}


def _with_backends(readers: dict, path: str, backend: str, *args):
    """Run `readers[backend](path, *args)`; `"auto"` tries the backends in `BACKENDS` order (see `read_frames_at`)."""
    if backend != "auto":
        if backend not in readers:
            raise ValueError(f"backend must be one of {tuple(readers) + ('auto',)}, got {backend!r}")
        return readers[backend](path, *args)
    _check_file(path)
    errors = []
    for name in BACKENDS:
        if name not in readers:
            continue
        try:
            return readers[name](path, *args)
        except VideoDecodeError as e:
            errors.append(e)
            if e.reason in ("missing", "empty", "unreadable"):
                break
    real = [e for e in errors if e.reason not in ("backend_unavailable", "keyframe_unsupported")]
    # prefer the PyAV diagnosis (it knows "no_video_stream"), else the first real one
    for e in real:
        if "pyav" in e.detail or e.reason in ("no_video_stream", "missing", "empty", "unreadable", "no_frames"):
            raise e
    raise (real or errors)[0]


def read_frames_at(path: str, timestamps: list[float], backend: str = "auto", return_times: bool = False):
    """Decode, by seeking, the frame displayed at each timestamp (seconds from the stream start).

    Args:
        path (`str`): local video file.
        timestamps (`list[float]`): any order, duplicates allowed.
        backend (`str`, *optional*, defaults to `"auto"`): `"decord"`, `"pyav"`, `"torchcodec"` or `"auto"`
            (decord, then PyAV, then torchcodec on failure / when unavailable).
        return_times (`bool`, *optional*, defaults to `False`): also return each decoded frame's presentation time.

    Returns:
        `np.ndarray` of shape `(len(timestamps), H, W, 3)`, uint8 RGB; with `return_times`, a tuple
        `(frames, times)` where `times[i]` (seconds from the stream start) is the start of the frame returned for
        `timestamps[i]` (`<= timestamps[i]` except before the first frame).

    Raises:
        `VideoDecodeError` (`.reason` says why); with `"auto"`, the first non-"backend_unavailable" error if every
        backend failed.
    """
    if len(timestamps) == 0:
        raise ValueError("timestamps is empty")
    frames, times = _with_backends(_READERS, path, backend, list(timestamps))
    return (frames, times) if return_times else frames


# ---------------------------------------------------------------- keyframe mode
#
# "keyframe" frame selection (pseudolabel `--frame_selection keyframe`): for each clip, decode only the keyframe
# nearest the clip's centre among the keyframes inside the clip's span `[start, end)`. A keyframe decodes on its own,
# so no frame before it is decoded (no forward decoding from an earlier keyframe to the exact centre).


def _nearest_key(key_times, start: float, end: float) -> int | None:
    """Position in `key_times` of the time in `[start, end)` nearest the span's centre (earlier one on a tie)."""
    centre, best = (start + end) / 2, None
    for k, t in enumerate(key_times):
        if start - _EPS <= t < end - _EPS and (best is None or abs(t - centre) < abs(key_times[best] - centre) - 1e-9):
            best = k
    return best


def _keyframes_decord(path: str, spans: list[tuple[float, float]], stats: dict):
    try:
        vr, ts, origin = _open_decord(path)
        keys = [int(k) for k in vr.get_key_indices()]
        key_times = [float(ts[k] - origin) for k in keys]
        chosen = [_nearest_key(key_times, s, e) for s, e in spans]
        wanted = sorted({keys[c] for c in chosen if c is not None})
        # get_batch on a keyframe index seeks to that keyframe and returns it (decord's `seek` alone is approximate)
        decoded = dict(zip(wanted, vr.get_batch(wanted).asnumpy())) if wanted else {}
        stats["decoded_frames"] = stats.get("decoded_frames", 0) + len(wanted)
    except VideoDecodeError:
        raise
    except Exception as e:
        raise VideoDecodeError(path, "corrupt", f"decord: {type(e).__name__}: {e}") from e
    frames = [None if c is None else np.ascontiguousarray(decoded[keys[c]], dtype=np.uint8) for c in chosen]
    return frames, [None if c is None else key_times[c] for c in chosen]


def _keyframes_pyav(path: str, spans: list[tuple[float, float]], stats: dict):
    """Find keyframes by demuxing packets only (no decoding), then decode each chosen keyframe packet on its own: a
    fresh decoder state, that one packet, end of stream. Exactly one frame is decoded per chosen keyframe."""

    container = _open_pyav(path)
    with container, _pyav_errors(path):
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        codec = stream.codec_context

        def key_packets(seek_t: float, stop_t: float):
            """Keyframe packets `(t, packet)` from a backward seek to `seek_t` until the stream passes `stop_t`."""
            if seek_t <= _EPS:
                container.seek(0, backward=True, any_frame=False)
            else:
                container.seek(max(0, int((origin + seek_t) / tb)), stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                t = ts * tb - origin
                if packet.is_keyframe and packet.pts is not None:
                    yield t, packet
                if t >= stop_t:
                    return

        frames, times = [], []
        for start, end in spans:
            centre = (start + end) / 2
            before = after = None
            landed_after = None
            for t, packet in key_packets(centre, end):
                if t <= centre + _EPS:
                    before = (t, packet)
                else:
                    if before is None and landed_after is None:
                        landed_after = t
                    if t < end - _EPS:
                        after = (t, packet)
                    break
            if before is None and start < centre and (landed_after is None or landed_after > start):
                # the demuxer landed after the centre (no index): scan the first half of the span from its start
                for t, packet in key_packets(start, centre):
                    if t > centre + _EPS:
                        break
                    before = (t, packet)
            cands = [c for c in (before, after) if c is not None and start - _EPS <= c[0] < end - _EPS]
            if not cands:
                frames.append(None)
                times.append(None)
                continue
            t, packet = min(cands, key=lambda c: (abs(c[0] - centre), c[0]))
            codec.flush_buffers()
            out = list(codec.decode(packet)) + list(codec.decode(None))
            codec.flush_buffers()
            stats["decoded_frames"] = stats.get("decoded_frames", 0) + len(out)
            if not out:  # an intra frame that does not decode alone: treat the clip as having no usable keyframe
                frames.append(None)
                times.append(None)
                continue
            frames.append(out[0].to_ndarray(format="rgb24").astype(np.uint8, copy=False))
            times.append(float(t))
    return frames, times


def _keyframes_torchcodec(path: str, spans: list[tuple[float, float]], stats: dict):
    # torchcodec lists keyframe *indices* (private `_get_key_frame_indices`) but has no public per-frame timestamp
    # table, so the keyframe nearest a time cannot be chosen without decoding: not supported.
    raise VideoDecodeError(path, "keyframe_unsupported", "torchcodec: no keyframe timestamps without decoding")


_KEYFRAME_READERS = {"decord": _keyframes_decord, "pyav": _keyframes_pyav, "torchcodec": _keyframes_torchcodec}


def read_keyframes_near(path: str, spans: list[tuple[float, float]], backend: str = "auto", stats: dict | None = None):
    """For each clip span `(start, end)`, decode only the keyframe nearest the span's centre among the keyframes with
    `start <= t < end`.

    Args:
        path (`str`): local video file.
        spans (`list[tuple[float, float]]`): clip spans, seconds from the stream start.
        backend (`str`, *optional*, defaults to `"auto"`): `"decord"` or `"pyav"` (or `"auto"`: decord, then PyAV).
            `"torchcodec"` raises `VideoDecodeError(reason="keyframe_unsupported")`.
        stats (`dict`, *optional*): `stats["decoded_frames"]` is increased by the number of frames decoded.

    Returns:
        `(frames, times)`: two lists of `len(spans)`; `frames[i]` is a uint8 RGB `(H, W, 3)` array and `times[i]` its
        presentation time, or both are `None` when no keyframe lies inside span `i`.
    """
    if len(spans) == 0:
        raise ValueError("spans is empty")
    return _with_backends(_KEYFRAME_READERS, path, backend, list(spans), stats if stats is not None else {})


FRAME_SELECTIONS = ("centre", "keyframe")


def read_clip_frames(path: str, spans: list[tuple[float, float]], frame_selection: str = "centre",
                     backend: str = "auto") -> tuple[np.ndarray, list[float], list[bool]]:  # fmt: skip
    """One frame per clip: the frame displayed at the clip's centre (`"centre"`, the paper's), or the keyframe
    nearest the centre inside the clip (`"keyframe"`; a clip without a keyframe gets its exact centre frame).

    Returns:
        `(frames, frame_times, fell_back)`: frames `(len(spans), H, W, 3)` uint8, the presentation time (seconds from
        the stream start) of each decoded frame, and for each clip whether keyframe mode fell back to the exact
        centre (always `False` in `"centre"` mode).
    """
    if frame_selection not in FRAME_SELECTIONS:
        raise ValueError(f"frame_selection must be one of {FRAME_SELECTIONS}, got {frame_selection!r}")
    centres = [(s + e) / 2 for s, e in spans]
    if frame_selection == "centre":
        frames, times = read_frames_at(path, centres, backend=backend, return_times=True)
        return frames, times, [False] * len(spans)
    key_frames, key_times = read_keyframes_near(path, spans, backend=backend)
    missing = [i for i, f in enumerate(key_frames) if f is None]
    if missing:
        exact, exact_times = read_frames_at(path, [centres[i] for i in missing], backend=backend, return_times=True)
        for i, f, t in zip(missing, exact, exact_times):
            key_frames[i], key_times[i] = f, t
    fell_back = set(missing)
    return np.stack(key_frames), [float(t) for t in key_times], [i in fell_back for i in range(len(spans))]


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
    "read_keyframes_near",
    "read_clip_frames",
    "FRAME_SELECTIONS",
    "read_image",
    "resize_frame",
    "encode_jpeg",
]
