"""Caption long videos (and images) with a FrozenCaptioner: timestamp clips -> frames -> batched `generate()`.

For each video:

1. `probe_video` gives the duration (from stream timestamps, not frame counts);
2. `clip_spans(duration, clip_seconds)` cuts `[0, duration)` into consecutive clips (8 s by default, the paper's clip
   length; a short remainder is merged into the previous clip, see `datasets_scripts.video_io.clip_spans`), so the
   clips tile the whole video with no gap;
3. `uniform_timestamps(start, end, num_frames)` picks the centres of `num_frames` equal parts of each clip, where
   `num_frames` is the processor's (capped at the vision tower's `num_frames`), and `read_frames_at` decodes exactly
   those frames by seeking;
4. clips from all inputs are batched through `processor(videos=...)` and `model.generate()`.

An image is a one-frame video and gets one caption. A file that cannot be read is reported in its result
(`CaptionResult.error`) and skipped; the others are still captioned.

Example:

```python
>>> from frozencaptioner.captioning import caption_videos
>>> results = caption_videos(["talk.mp4", "photo.jpg"], "org/frozencaptioner")  # a model dir or Hub repo id
>>> for seg in results[0].segments:
...     print(f"{seg.start:7.2f} {seg.end:7.2f}  {seg.caption}")
```
"""

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class CaptionSegment:
    """One captioned clip: `[start, end)` in seconds from the start of the video."""

    index: int
    start: float
    end: float
    caption: str = ""


@dataclass
class CaptionResult:
    """Captions of one input file. `error` is set (and `segments` empty) when the file could not be read."""

    path: str
    kind: str  # "video" or "image"
    duration: float | None = None
    segments: list[CaptionSegment] = field(default_factory=list)
    error: str | None = None
    clip_seconds: float | None = None
    num_frames: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


def is_image_path(path: str) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_captioner(
    model_name_or_path: str | os.PathLike,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = True,
):
    """`AutoModel` + `AutoProcessor` from a local model folder or a Hub repo id, with `trust_remote_code=True` (set it
    to False to use the locally installed, registered classes instead of the folder's code).

    Args:
        model_name_or_path: a folder written by `save_hub_format` / `push_to_hub model`, or a Hub repo id.
        revision (`str`, *optional*): a branch, tag or commit (pin a commit for remote code you did not write).
        device (`str`, *optional*): defaults to `"cuda"` when available, else `"cpu"`.
        dtype (`str`, *optional*): `"float32"`, `"float16"`, `"bfloat16"` or `"auto"` (the checkpoint's dtype).
            Defaults to float32 on CPU and `"auto"` on GPU.
        token: passed to `from_pretrained` (private repos).

    Returns:
        `(model, processor)`, the model in eval mode on `device`.
    """
    import torch
    from transformers import AutoModel, AutoProcessor

    device = device or _default_device()
    if dtype is None:
        dtype = "float32" if str(device).startswith("cpu") else "auto"
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    if token is not None:
        kwargs["token"] = token
    name = os.fspath(model_name_or_path)
    model = AutoModel.from_pretrained(name, dtype=torch_dtype, **kwargs)
    processor = AutoProcessor.from_pretrained(name, **kwargs)
    return model.to(device).eval(), processor


@dataclass
class _Clip:
    result: int  # index into results
    segment: int  # index into results[result].segments
    timestamps: list[float]


def _plan(paths: Sequence[str], clip_seconds: float, min_last_clip: float | None, num_frames: int):
    """Probe every input; return results (segments with times, no captions yet) and the video/image clip lists."""
    from datasets_scripts.video_io import VideoDecodeError, clip_spans, probe_video, uniform_timestamps

    results, video_clips, image_items = [], [], []
    for path in paths:
        path = os.fspath(path)
        if is_image_path(path):
            result = CaptionResult(path=path, kind="image", duration=0.0, num_frames=1)
            result.segments.append(CaptionSegment(index=0, start=0.0, end=0.0))
            results.append(result)
            image_items.append(len(results) - 1)
            continue
        result = CaptionResult(path=path, kind="video", clip_seconds=clip_seconds, num_frames=num_frames)
        results.append(result)
        try:
            info = probe_video(path)
        except VideoDecodeError as e:
            result.error = str(e)
            continue
        except Exception as e:  # any other failure to open counts as unreadable, never a crash of the whole run
            result.error = f"{path}: unreadable ({type(e).__name__}: {e})"
            continue
        result.duration = info.duration
        for i, (start, end) in enumerate(clip_spans(info.duration, clip_seconds, min_last_clip)):
            result.segments.append(CaptionSegment(index=i, start=start, end=end))
            video_clips.append(_Clip(len(results) - 1, i, uniform_timestamps(start, end, num_frames)))
    return results, video_clips, image_items


def _batches(items: list, batch_size: int) -> Iterable[list]:
    for i in range(0, len(items), batch_size):
        yield items[i : i + batch_size]


def _fail(result: CaptionResult, error: Exception) -> None:
    result.error = str(error) if str(error).startswith(result.path) else f"{result.path}: {error}"
    result.segments = []


def caption_videos(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    model,
    processor=None,
    clip_seconds: float = 8.0,
    min_last_clip: float | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 20,
    num_beams: int = 1,
    num_frames: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    backend: str = "auto",
    progress: bool | None = None,
    generate_kwargs: dict | None = None,
) -> list[CaptionResult]:
    """Caption videos clip by clip (and images), in one call.

    Args:
        paths: video or image files (images: `IMAGE_EXTENSIONS`, one caption each).
        model: a model folder / Hub repo id (loaded with `load_captioner`, `trust_remote_code=True`), or a loaded
            `FrozenCaptionerForConditionalGeneration`.
        processor: the matching processor; loaded from `model` when it is a path / repo id or has `name_or_path`.
        clip_seconds (`float`, *optional*, defaults to 8.0): clip length in seconds (the paper's 8 s).
        min_last_clip (`float`, *optional*): shortest remainder kept as its own last clip (default `clip_seconds / 2`;
            a shorter remainder extends the previous clip).
        batch_size (`int`, *optional*, defaults to 8): clips per `generate()` call.
        max_new_tokens, num_beams: generation settings (the paper reports results without beam search).
        num_frames (`int`, *optional*): frames per clip; default the processor's, capped at the model's maximum.
        device, dtype, revision: used when loading `model` from a name (see `load_captioner`); `device` also moves
            a loaded model there (default: where the model already is).
        backend (`str`, *optional*, defaults to `"auto"`): frame decoder for `read_frames_at`.
        progress (`bool`, *optional*): tqdm bar on stderr; default: shown when there is more than one batch.
        generate_kwargs (`dict`, *optional*): extra `generate()` arguments (`min_new_tokens`, `do_sample`, ...).

    Returns:
        `list[CaptionResult]`, one per input in input order; a failed input has `error` set and no segments.
    """
    import torch
    from tqdm.auto import tqdm

    from datasets_scripts.video_io import VideoDecodeError, read_frames_at, read_image

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(model, (str, os.PathLike)):
        loaded_model, loaded_processor = load_captioner(model, revision=revision, device=device, dtype=dtype)
        model, processor = loaded_model, processor or loaded_processor
    elif processor is None:
        from transformers import AutoProcessor

        name = getattr(model, "name_or_path", None)
        if not name:
            raise ValueError("pass `processor` together with a loaded model")
        processor = AutoProcessor.from_pretrained(name, trust_remote_code=True)
    model.eval()
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    model_dtype = next(model.parameters()).dtype

    max_frames = getattr(model.config, "max_num_frames", None)  # any tower kind (TimeSformer: its num_frames)
    num_frames = int(num_frames or processor.num_frames)
    if max_frames is not None and num_frames > max_frames:
        print(
            f"warning: {num_frames} frames per clip requested, the model takes at most {max_frames}", file=sys.stderr
        )
        num_frames = int(max_frames)

    results, video_clips, image_items = _plan([os.fspath(p) for p in paths], clip_seconds, min_last_clip, num_frames)
    gen_kwargs = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, **(generate_kwargs or {})}

    def run(pixel_values) -> list[str]:
        pixel_values = pixel_values.to(device=device, dtype=model_dtype)
        with torch.inference_mode():
            ids = model.generate(pixel_values=pixel_values, **gen_kwargs)
        return processor.batch_decode(ids, skip_special_tokens=True)

    total = len(video_clips) + len(image_items)
    show = progress if progress is not None else total > batch_size
    with tqdm(total=total, unit="clip", desc="captioning", disable=not show, file=sys.stderr) as bar:
        for batch in _batches(video_clips, batch_size):
            batch = [c for c in batch if results[c.result].ok]
            if not batch:
                continue
            frames_by_clip: dict[int, np.ndarray] = {}
            by_video: dict[int, list[int]] = {}
            for j, clip in enumerate(batch):
                by_video.setdefault(clip.result, []).append(j)
            for r, members in by_video.items():
                stamps = [t for j in members for t in batch[j].timestamps]
                try:
                    frames = read_frames_at(results[r].path, stamps, backend=backend)
                except (VideoDecodeError, OSError, RuntimeError, ValueError) as e:
                    _fail(results[r], e)
                    continue
                for k, j in enumerate(members):
                    frames_by_clip[j] = frames[k * num_frames : (k + 1) * num_frames]
            keep = [j for j in range(len(batch)) if j in frames_by_clip]
            if keep:
                inputs = processor(videos=[frames_by_clip[j] for j in keep], num_frames=num_frames)
                for j, caption in zip(keep, run(inputs["pixel_values"])):
                    results[batch[j].result].segments[batch[j].segment].caption = caption
            bar.update(len(batch))
        for batch in _batches(image_items, batch_size):
            images, members = [], []
            for r in batch:
                try:
                    images.append(read_image(results[r].path))
                    members.append(r)
                except (VideoDecodeError, OSError, ValueError) as e:
                    _fail(results[r], e)
            if images:
                for r, caption in zip(members, run(processor(images=images)["pixel_values"])):
                    results[r].segments[0].caption = caption
            bar.update(len(batch))
    return results


__all__ = ["CaptionSegment", "CaptionResult", "IMAGE_EXTENSIONS", "caption_videos", "load_captioner", "is_image_path"]
