# Copyright 2026 The FrozenCaptioner authors. Licensed under the Apache License, Version 2.0.
"""FrozenCaptionerProcessor: uniform frame sampling + the vision tower's video preprocessing + OPT captions."""

import math

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import logging

from .configuration_frozencaptioner import FrozenCaptionerConfig, import_timm  # (also runs the version guard, once)


logger = logging.get_logger(__name__)


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread uniformly over a clip of `num_available` frames: the centre frame of each of
    `num_frames` equal segments (TSN-style). Short clips repeat frames, so every clip yields exactly `num_frames`."""
    if num_available < 1:
        raise ValueError("cannot sample frames from an empty clip (0 frames)")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    centres = (np.arange(num_frames) + 0.5) * num_available / num_frames
    return np.clip(np.floor(centres).astype(np.int64), 0, num_available - 1)


# ------------------------------------------------------------------------------------ a tower's own preprocessing
# The video processor attributes that describe one frame's preprocessing (BaseVideoProcessor / BaseImageProcessor).
_FRAME_FLAGS = ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb")
_FRAME_VALUES = ("size", "resample", "crop_size", "rescale_factor", "image_mean", "image_std")
# timm's interpolation names -> PIL resampling codes (what transformers' processors store)
_TIMM_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def _plain_size(size) -> dict | None:
    """A `size` / `crop_size` (dict, or transformers 5.24's `SizeDict`) -> a plain dict without unset keys."""
    if size is None:
        return None
    keys = ("height", "width", "shortest_edge", "longest_edge")
    if isinstance(size, dict):
        return {k: v for k, v in size.items() if v is not None}
    return {k: getattr(size, k) for k in keys if getattr(size, k, None) is not None}


def _timm_frame_kwargs(data_config: dict) -> dict:
    """timm's eval transform (`transforms_imagenet_eval`: resize to input / crop_pct, centre crop, normalise) as video
    processor settings."""
    crop_mode = data_config.get("crop_mode") or "center"
    if crop_mode not in ("center", "squash"):
        raise ValueError(f"timm crop_mode {crop_mode!r} has no video-processor equivalent (use 'center' or 'squash')")
    _, height, width = data_config["input_size"]
    crop_pct = data_config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
    scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    if crop_mode == "center" and scale[0] == scale[1]:
        size = {"shortest_edge": scale[0]}  # timm: Resize(scalar) = the short side
    elif crop_mode == "center":
        raise ValueError(f"timm non-square centre crops ({height}x{width}) are not supported")
    else:
        size = {"height": scale[0], "width": scale[1]}
    interpolation = data_config.get("interpolation") or "bilinear"
    if interpolation not in _TIMM_RESAMPLE:
        raise ValueError(f"timm interpolation {interpolation!r} is not one of {sorted(_TIMM_RESAMPLE)}")
    return dict(
        do_resize=True, size=size, resample=_TIMM_RESAMPLE[interpolation], do_center_crop=True,
        crop_size={"height": height, "width": width}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=list(data_config["mean"]), image_std=list(data_config["std"]), do_convert_rgb=True,
    )  # fmt: skip


def _timm_data_config(vision_config) -> dict:
    """timm's own resolution of a tower's `pretrained_cfg` (what `TimmWrapperImageProcessor` uses)."""
    return import_timm().data.resolve_data_config(
        {}, pretrained_cfg=dict(getattr(vision_config, "pretrained_cfg", None) or {}), model=None, verbose=False
    )


def _default_frame_kwargs(vision_config) -> dict:
    """A tower family's own preprocessing defaults at the tower's native size (used when no processor was saved)."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    if vision_config.model_type == "timm_wrapper":
        return _timm_frame_kwargs(_timm_data_config(vision_config))
    size = vision_config.image_size
    size = size[-1] if isinstance(size, (list, tuple)) else size
    if vision_config.model_type == "clip_vision_model":
        return _image_processor_kwargs(
            CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        )
    if vision_config.model_type == "siglip_vision_model":
        return _image_processor_kwargs(SiglipImageProcessor(size={"height": size, "width": size}))
    return {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}}  # TimeSformer: VideoMAE's


def _image_processor_kwargs(image_processor) -> dict:
    """An image processor's per-frame steps (resize rule, resampling, crop, rescale, mean/std) as video processor
    settings; timm's from its resolved `data_config`."""
    data_config = getattr(image_processor, "data_config", None)
    if data_config is not None:  # TimmWrapperImageProcessor
        return _timm_frame_kwargs(data_config)
    kwargs = {flag: bool(getattr(image_processor, flag, None)) for flag in _FRAME_FLAGS}
    for key in _FRAME_VALUES:
        value = getattr(image_processor, key, None)
        if value is not None:
            kwargs[key] = _plain_size(value) if key.endswith("size") else value
    resample = kwargs.get("resample")
    if resample is not None and not isinstance(resample, int):  # a PILImageResampling member
        kwargs["resample"] = int(getattr(resample, "value", resample))
    size = kwargs.get("size") or {}
    if not kwargs["do_center_crop"] and "height" in size and "width" in size:
        # a fixed resize (SigLIP): a centre crop to that same size is a no-op, and `crop_size` then states the output
        # size for every tower kind (what train.py / evaluate_captions read)
        kwargs.update(do_center_crop=True, crop_size={"height": size["height"], "width": size["width"]})
    return kwargs


def video_processor_for_tower(vision_config=None, image_processor=None):
    r"""
    A vision tower's own frame preprocessing as a video processor, the `video_processor` a
    [`FrozenCaptionerProcessor`] holds: every frame is resized, centre-cropped, rescaled and normalised as the tower's
    image processor does it (its mean/std, size rule and resampling; CLIP's, SigLIP's or timm's, not VideoMAE's). The
    result is a `VideoMAEVideoProcessor` (transformers' plain resize / crop / normalise video pipeline) carrying those
    settings; `save_pretrained` writes them with the processor.

    Args:
        vision_config (`PreTrainedConfig`, *optional*):
            The tower's config (`FrozenCaptionerConfig.vision_config`; a full model config is accepted). Without
            `image_processor`: that tower family's defaults at its native size (CLIP: `CLIPImageProcessor`'s, SigLIP:
            `SiglipImageProcessor`'s, timm: its `pretrained_cfg` as timm resolves it, TimeSformer: VideoMAE's).
        image_processor (*optional*):
            The tower's own processor (`AutoImageProcessor.from_pretrained(tower)`: `CLIPImageProcessor`,
            `SiglipImageProcessor`, `TimmWrapperImageProcessor`, ...); a video processor is returned as it is.
    """
    from transformers import VideoMAEVideoProcessor
    from transformers.video_processing_utils import BaseVideoProcessor

    if isinstance(image_processor, BaseVideoProcessor):
        return image_processor
    if image_processor is not None:
        kwargs = _image_processor_kwargs(image_processor)
    elif vision_config is not None:
        if getattr(vision_config, "model_type", None) == "frozencaptioner":
            vision_config = vision_config.vision_config
        kwargs = _default_frame_kwargs(FrozenCaptionerConfig._typed_vision_config(vision_config))
    else:
        raise ValueError("pass the tower's vision_config or its image_processor")
    return VideoMAEVideoProcessor(**kwargs)


def load_tower_video_processor(vision_model_name_or_path: str, **kwargs):
    """The video processor for a pre-trained tower checkpoint (`from_pretrained_backbones`' vision argument): a
    TimeSformer's own video processor; an image tower's image processor (`AutoImageProcessor`) turned into a video
    processor by `video_processor_for_tower`. A checkpoint without a saved processor (e.g. a bare
    `CLIPModel.save_pretrained` folder) gets its family's defaults at its native size, with a warning. `kwargs`
    (`revision`, `cache_dir`, `token`, `local_files_only`) go to `from_pretrained`."""
    from transformers import AutoConfig, AutoImageProcessor, AutoVideoProcessor

    vision_config = FrozenCaptionerConfig._typed_vision_config(
        AutoConfig.from_pretrained(vision_model_name_or_path, **kwargs)
    )
    if vision_config.model_type == "timesformer":
        return AutoVideoProcessor.from_pretrained(vision_model_name_or_path, **kwargs)
    if vision_config.model_type == "timm_wrapper":  # timm keeps its preprocessing in config.json's pretrained_cfg
        return video_processor_for_tower(vision_config)
    try:
        image_processor = AutoImageProcessor.from_pretrained(vision_model_name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        logger.warning(
            f"no image processor saved with {vision_model_name_or_path} ({type(err).__name__}); using the "
            f"{vision_config.model_type} defaults at its native size {vision_config.image_size}"
        )
        image_processor = None
    return video_processor_for_tower(vision_config, image_processor=image_processor)


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
    `video_processor` into `pixel_values` of shape `(batch, num_frames, 3, H, W)`: TimeSformer's VideoMAE-style
    preprocessing, or an image tower's own (`video_processor_for_tower`, `from_pretrained_backbones`). Images are
    one-frame videos: `(batch, 1, 3, H, W)`.
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

    def set_image_size(self, image_size: int):
        """Preprocess to `image_size` x `image_size` frames from now on (the paper fine-tunes at 320-380 after
        pre-training at 224), keeping the tower's own rule: the resize keeps its ratio to the crop (timm's
        `1 / crop_pct`, CLIP's and TimeSformer's 1), a fixed resize (SigLIP) becomes `image_size` square. The model
        interpolates position embeddings for TimeSformer, CLIP and SigLIP; a timm ViT needs `dynamic_img_size`."""
        video_processor = self.video_processor
        size = _plain_size(video_processor.size) or {}
        crop = _plain_size(getattr(video_processor, "crop_size", None)) or {}
        if not getattr(video_processor, "do_center_crop", False) or "height" not in crop:
            raise ValueError(f"set_image_size needs a centre-cropping video processor, got size={size}, crop={crop}")
        ratio = {key: value / crop["height"] for key, value in size.items() if key != "longest_edge"}
        video_processor.size = {key: math.floor(image_size * r + 1e-6) for key, r in ratio.items()}
        video_processor.crop_size = {"height": image_size, "width": image_size}

    @classmethod
    def from_pretrained_backbones(
        cls,
        vision_model_name_or_path: str,
        text_model_name_or_path: str,
        num_frames: int = 8,
        max_length: int = 64,
        **kwargs,
    ) -> "FrozenCaptionerProcessor":
        """The processor for `FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(vision, text)`: the
        vision tower's own preprocessing (`load_tower_video_processor`) and the text checkpoint's tokenizer. `kwargs`
        (`revision`, `cache_dir`, `token`, `local_files_only`) go to both."""
        from transformers import AutoTokenizer

        return cls(
            video_processor=load_tower_video_processor(vision_model_name_or_path, **kwargs),
            tokenizer=AutoTokenizer.from_pretrained(text_model_name_or_path, **kwargs),
            num_frames=num_frames,
            max_length=max_length,
        )

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

__all__ = [
    "FrozenCaptionerProcessor",
    "load_tower_video_processor",
    "sample_frame_indices",
    "video_processor_for_tower",
]
