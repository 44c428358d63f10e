# Copyright 2026 The FrozenCaptioner authors. Licensed under the Apache License, Version 2.0.
"""FrozenCaptionerProcessor: uniform frame sampling + the vision tower's video preprocessing + OPT captions."""

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

from .configuration_frozencaptioner import TESTED_TRANSFORMERS  # noqa: F401  (imports the version guard, once)


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread uniformly over a clip of `num_available` frames: the centre frame of each of
    `num_frames` equal segments (TSN-style). Short clips repeat frames, so every clip yields exactly `num_frames`."""
    if num_available < 1:
        raise ValueError("cannot sample frames from an empty clip (0 frames)")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    centres = (np.arange(num_frames) + 0.5) * num_available / num_frames
    return np.clip(np.floor(centres).astype(np.int64), 0, num_available - 1)


def _is_frame(x) -> bool:
    """A single frame: a PIL image or an (H, W, C) array."""
    return (hasattr(x, "mode") and hasattr(x, "size")) or (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 3)


def _as_frame_stack(clip) -> np.ndarray | torch.Tensor:
    """One clip -> a stack of frames, (N, H, W, C) or (N, C, H, W)."""
    if isinstance(clip, (list, tuple)):
        if not clip:
            raise ValueError("cannot sample frames from an empty clip (0 frames)")
        return np.stack([np.asarray(frame) for frame in clip])
    if isinstance(clip, (np.ndarray, torch.Tensor)):
        if clip.ndim != 4:
            raise ValueError(f"a video clip must be a (frames, height, width, 3) array, got shape {tuple(clip.shape)}")
        return clip
    raise ValueError(f"a video clip must be an array, a tensor or a list of frames, got {type(clip).__name__}")


class FrozenCaptionerProcessor(ProcessorMixin):
    r"""
    Prepares inputs for [`FrozenCaptionerForConditionalGeneration`].

    Videos: `num_frames` frames are sampled uniformly from each clip, then resized, centre-cropped and normalised by
    `video_processor` (TimeSformer's VideoMAE-style preprocessing) into `pixel_values` of shape
    `(batch, num_frames, 3, H, W)`. Images are one-frame videos: `(batch, 1, 3, H, W)`.
    Text: captions are tokenised as `BOS caption EOS` (OPT uses token 2 for both, so EOS is appended explicitly),
    padded; `labels` are the ids with `-100` on padding.

    Args:
        video_processor ([`BaseVideoProcessor`]): e.g. `VideoMAEVideoProcessor`.
        tokenizer ([`PreTrainedTokenizerBase`]): the OPT (GPT-2 BPE) tokenizer.
        num_frames (`int`, *optional*, defaults to 8): frames sampled per video clip.
        max_length (`int`, *optional*, defaults to 64): caption length limit in tokens (EOS included).
    """

    def __init__(self, video_processor=None, tokenizer=None, num_frames: int = 8, max_length: int = 64, **kwargs):
        self.num_frames = int(num_frames)
        self.max_length = int(max_length)
        super().__init__(video_processor, tokenizer, **kwargs)

    def __call__(
        self,
        videos=None,
        images=None,
        text=None,
        num_frames: int | None = None,
        max_length: int | None = None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            videos: one clip or a list of clips; a clip is a `(frames, H, W, 3)` uint8 array / tensor or a list of
                frames (arrays or PIL images).
            images: one image or a list of images (PIL, `(H, W, 3)` arrays); each becomes a 1-frame video.
            text: a caption or a list of captions (targets for training, or prompts).
            num_frames: overrides the processor's `num_frames` for this call.
        """
        if videos is None and images is None and text is None:
            raise ValueError("pass at least one of videos, images or text")
        if videos is not None and images is not None:
            raise ValueError("pass videos or images, not both: a batch holds one modality")
        data = {}
        if videos is not None or images is not None:
            clips = self._clips(videos, images, num_frames or self.num_frames)
            pixels = self.video_processor(
                videos=clips, return_tensors=return_tensors, do_sample_frames=False, **kwargs
            )
            data["pixel_values"] = pixels["pixel_values"]
        if text is not None:
            data.update(self.tokenize_captions(text, max_length=max_length, return_tensors=return_tensors))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _clips(self, videos, images, num_frames):
        if images is not None:
            images = images if isinstance(images, (list, tuple)) else [images]
            return [_as_frame_stack([image]) for image in images]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim not in (4, 5):
                raise ValueError(
                    f"videos must be a (frames, H, W, 3) clip or a batch of clips, got shape {tuple(videos.shape)}"
                )
            videos = [videos] if videos.ndim == 4 else list(videos)
        elif isinstance(videos, (list, tuple)) and videos and _is_frame(videos[0]):
            videos = [videos]  # a list of frames is one clip
        if not isinstance(videos, (list, tuple)) or not videos:
            raise ValueError("videos must be a clip or a non-empty list of clips")
        out = []
        for clip in videos:
            frames = _as_frame_stack(clip)
            out.append(frames[sample_frame_indices(len(frames), num_frames)])
        return out

    def tokenize_captions(self, text, max_length: int | None = None, return_tensors: str = "pt") -> dict:
        """`BOS caption EOS`, right-padded; labels are the ids with -100 on padding."""
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a string or a list of strings")
        max_length = max_length or self.max_length
        tok = self.tokenizer
        bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        if eos is None or pad is None:
            raise ValueError("the tokenizer needs eos_token and pad_token set")
        rows = []
        for caption in texts:
            ids = tok(caption, add_special_tokens=False)["input_ids"][: max_length - 2]
            rows.append(([bos] if bos is not None else []) + ids + [eos])
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), pad, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        labels = np.where(attention_mask == 1, input_ids, -100)
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if return_tensors == "pt":
            out = {k: torch.from_numpy(v) for k, v in out.items()}
        return out

    def batch_decode(self, *args, skip_special_tokens: bool = True, **kwargs):
        """Token ids -> caption strings, special tokens stripped."""
        texts = self.tokenizer.batch_decode(*args, skip_special_tokens=skip_special_tokens, **kwargs)
        return [t.strip() for t in texts]

    def decode(self, *args, skip_special_tokens: bool = True, **kwargs):
        return self.tokenizer.decode(*args, skip_special_tokens=skip_special_tokens, **kwargs).strip()

    @property
    def model_input_names(self):
        return ["pixel_values", "input_ids", "attention_mask"]


# `save_pretrained` writes `auto_map["AutoProcessor"]` and copies this file (and the configuration file it imports).
FrozenCaptionerProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["FrozenCaptionerProcessor", "sample_frame_indices"]
