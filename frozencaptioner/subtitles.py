"""Timed-caption writers: WebVTT, SubRip (SRT), JSON and plain text.

Times are rounded to whole milliseconds once, by `to_milliseconds`, so a cue that ends where the next one starts
prints the same timestamp twice (contiguous cues stay contiguous after formatting).

* **WebVTT** (W3C WebVTT): a `WEBVTT` header line, a blank line, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` followed
  by the cue text, cues separated by one blank line. `&`, `<`, `>` in the text are escaped as `&amp;`, `&lt;`,
  `&gt;`, and `-->` cannot appear in a payload.
* **SRT**: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text, a blank line between cues.
* Cue text is one line (newlines in a caption become spaces); an empty caption is written as `EMPTY_CUE_TEXT`
  because an empty SRT cue is a blank line that players read as the end of the cue (the JSON/TXT outputs keep the
  empty string).
* An image has no timeline: its single caption is written as one cue of `IMAGE_CUE_SECONDS` in VTT/SRT.
"""

import json
import os
from collections.abc import Sequence


FORMATS = ("vtt", "srt", "json", "txt")
EMPTY_CUE_TEXT = "(no caption)"
IMAGE_CUE_SECONDS = 5.0


def to_milliseconds(seconds: float) -> int:
    """Seconds -> whole milliseconds (round half up); negative times are an error."""
    if seconds < 0:
        raise ValueError(f"negative timestamp {seconds}")
    return int(seconds * 1000 + 0.5)


def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """`HH:MM:SS.mmm` (WebVTT, `decimal_marker="."`) or `HH:MM:SS,mmm` (SRT, `decimal_marker=","`). Hours grow past
    two digits for inputs over 99 h, as both formats allow."""
    ms = to_milliseconds(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cue_text(text: str) -> str:
    text = _one_line(text)
    return text if text else EMPTY_CUE_TEXT


def _cues(segments: Sequence[dict], kind: str = "video") -> list[tuple[float, float, str]]:
    cues = []
    for seg in segments:
        start, end = float(seg["start"]), float(seg["end"])
        if kind == "image":
            start, end = 0.0, IMAGE_CUE_SECONDS
        if to_milliseconds(end) <= to_milliseconds(start):
            raise ValueError(f"cue must end after it starts: [{start}, {end}]")
        cues.append((start, end, _cue_text(seg["caption"])))
    return cues


def to_vtt(segments: Sequence[dict], kind: str = "video") -> str:
    """WebVTT document for `segments` (dicts with `start`, `end` in seconds and `caption`)."""
    blocks = ["WEBVTT"]
    for start, end, text in _cues(segments, kind):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}")
    return "\n\n".join(blocks) + "\n"


def to_srt(segments: Sequence[dict], kind: str = "video") -> str:
    """SubRip document: numbered cues from 1."""
    blocks = []
    for i, (start, end, text) in enumerate(_cues(segments, kind), start=1):
        text = text.replace("-->", "->")
        blocks.append(f"{i}\n{format_timestamp(start, ',')} --> {format_timestamp(end, ',')}\n{text}")
    return "\n\n".join(blocks) + "\n" if blocks else ""


def to_txt(segments: Sequence[dict], kind: str = "video") -> str:
    """One line per clip: `[HH:MM:SS.mmm --> HH:MM:SS.mmm] caption` (images: just the caption)."""
    if kind == "image":
        return "".join(_one_line(seg["caption"]) + "\n" for seg in segments)
    return "".join(
        f"[{format_timestamp(seg['start'])} --> {format_timestamp(seg['end'])}] {_one_line(seg['caption'])}\n"
        for seg in segments
    )


def to_json(result: dict) -> str:
    """The whole result (path, kind, duration, segments with `start`/`end`/`caption`, ...) as indented JSON."""
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def render(result: dict, fmt: str) -> str:
    """Render a caption result (`CaptionResult.to_dict()`) in one of `FORMATS`."""
    segments, kind = result["segments"], result.get("kind", "video")
    if fmt == "vtt":
        return to_vtt(segments, kind)
    if fmt == "srt":
        return to_srt(segments, kind)
    if fmt == "txt":
        return to_txt(segments, kind)
    if fmt == "json":
        return to_json(result)
    raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")


def write_captions(result: dict, path: str | os.PathLike, fmt: str | None = None) -> str:
    """Write `result` to `path` (format from `fmt` or the file extension), UTF-8, `\\n` line ends."""
    path = os.fspath(path)
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    text = render(result, fmt)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return path


__all__ = [
    "FORMATS",
    "EMPTY_CUE_TEXT",
    "IMAGE_CUE_SECONDS",
    "to_milliseconds",
    "format_timestamp",
    "to_vtt",
    "to_srt",
    "to_txt",
    "to_json",
    "render",
    "write_captions",
]
