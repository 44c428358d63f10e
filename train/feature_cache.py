"""Cached visual features: the record of the frozen tower that made them, and its check.

A feature cache (`datasets_scripts/cache_features.py`) is a set of parquet shards with rows
`{"id": str, "caption": str, "source": str, "features": binary}`: `features` holds one clip's frozen-tower output as
raw little-endian `float16` / `float32` bytes of a fixed shape, and every shard's footer (parquet key-value metadata
`frozencaptioner.feature_cache`) holds the **record**: what the features are and which tower and preprocessing made
them. `train/data.py` recognises cached shards by their `features` column (no flag) and `train/train.py` refuses a
cache whose record does not match the run's model and processor (`check_cache_record`).

Record fields:

* `format`: `FORMAT` (the layout version).
* `tokens`: `"pooled"`: `get_pooled_video_features`, `(frames + patches, D)`, time tokens first (separable
  cross-attention, fed back as `vision_pooled_states` with `vision_num_frames`); `"full"`: the tower's
  `last_hidden_state` (`(1 + patches * frames, D)` for TimeSformer, `(frames, patches, D)` for a frame-wise tower;
  full cross-attention, fed back as `vision_hidden_states`).
* `shape`, `dtype`: of one row's `features`; `num_frames`: frames per clip (1 for images); `tower_dtype`: the dtype
  the tower ran in (informative).
* `vision_config_sha256`: the tower's config (volatile keys dropped, as in the checkpoints' model record).
* `vision_weights`: `{"dtype", "sha256": {dtype: hash}}`: the tower's parameter names, shapes and ~1K evenly strided
  values of every parameter (as in the checkpoints' model record), hashed after rounding to each dtype at most as
  precise as the tower's. A run compares its own tower's hash in the coarser of the two dtypes, so a cache made with
  the fp32 tower (the default) is accepted by a run that loads the same tower in fp32, fp16 or bf16; a different
  checkpoint or seed differs in practically every value. (A cache made in fp16 serves fp16 and fp32 runs, bf16 likewise.)
* `preprocessing`: the video processor's settings (size, crop, mean, std, resampling, ...) after `--image_size`:
  the cache fixes the crop, so a run that would preprocess differently is refused.
* `source`: where the tower came from (informative; not compared).
"""

import hashlib
import json

import numpy as np
import torch


FORMAT = "frozencaptioner-feature-cache-v1"
FEATURES = "features"  # the column that marks a cached shard
METADATA_KEY = b"frozencaptioner.feature_cache"
POOLED, FULL = "pooled", "full"
SAMPLES_PER_TENSOR = 1024
DTYPES = {"fp16": "float16", "fp32": "float32"}

VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures", "auto_map",
                        "_attn_implementation_autoset", "_commit_hash", "_attn_implementation"}  # fmt: skip
_PRECISION = {torch.float64: 3, torch.float32: 2, torch.float16: 1, torch.bfloat16: 1}


def stable_config(value):
    """A config dict without the keys that change between saves of the same model (paths, versions, dtype)."""
    if isinstance(value, dict):
        return {k: stable_config(v) for k, v in sorted(value.items()) if k not in VOLATILE_CONFIG_KEYS}
    if isinstance(value, (list, tuple)):
        return [stable_config(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def config_sha256(config_dict: dict) -> str:
    return hashlib.sha256(json.dumps(stable_config(config_dict), sort_keys=True).encode()).hexdigest()


def strided_sample(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """`n` to `2n` evenly strided values of `tensor` (all of them if it is smaller), flattened, on the CPU."""
    flat = tensor.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // n)].cpu()


def weights_fingerprint(module: torch.nn.Module, dtypes=None) -> dict:
    """`{"dtype", "sha256": {dtype: hash}}` of `module`'s parameters (names, shapes, strided samples rounded to each
    dtype in `dtypes`; default: every dtype at most as precise as the parameters')."""
    params = list(module.named_parameters())
    own = {p.dtype for _, p in params}
    if len(own) != 1:
        raise ValueError(f"the vision tower's parameters have several dtypes {sorted(map(str, own))}")
    own = own.pop()
    if dtypes is None:
        dtypes = [d for d in _PRECISION if _PRECISION[d] <= _PRECISION[own] and (d == own or d != torch.float64)]
    digests = {}
    for dtype in dtypes:
        digest = hashlib.sha256()
        for name, param in params:
            digest.update(f"{name}{tuple(param.shape)}".encode())
            digest.update(strided_sample(param, SAMPLES_PER_TENSOR).to(dtype).double().numpy().tobytes())
        digests[str(dtype).replace("torch.", "")] = digest.hexdigest()
    return {"dtype": str(own).replace("torch.", ""), "sha256": digests}


def same_weights(saved: dict, module: torch.nn.Module) -> bool:
    """`module`'s parameters hash like the cache's tower, compared in the coarser of the two dtypes."""
    mine = next(module.parameters()).dtype
    theirs = getattr(torch, saved["dtype"])
    coarse = mine if _PRECISION[mine] < _PRECISION[theirs] or mine == theirs else theirs
    name = str(coarse).replace("torch.", "")
    if name not in saved["sha256"]:  # fp16 vs bf16: no exact common rounding
        return False
    return weights_fingerprint(module, [coarse])["sha256"][name] == saved["sha256"][name]


def preprocessing_settings(processor) -> dict:
    """What the video processor does to a frame (the crop after `set_image_size`), JSON-ready."""
    return stable_config(processor.video_processor.to_dict())


def tokens_kind(model) -> str:
    return POOLED if model.config.cross_attention == "separable" else FULL


def tower_record(model, processor, num_frames: int) -> dict:
    """The part of a cache record that must match the run: the tower, its preprocessing, the frame count."""
    return {
        "format": FORMAT,
        "num_frames": int(num_frames),
        "vision_config_sha256": config_sha256(model.config.vision_config.to_dict()),
        "vision_weights": weights_fingerprint(model.vision_model),
        "preprocessing": preprocessing_settings(processor),
    }


def check_cache_record(record: dict, model, processor, num_frames: int, what: str) -> None:
    """Refuse a cache (`record`, from its shards' footers) made by another tower, preprocessing or frame count than
    this run's `model` / `processor` would use on the stream `what` (with `num_frames` frames per clip)."""
    if record.get("format") != FORMAT:
        raise ValueError(f"{what}: feature cache format {record.get('format')!r}, this version reads {FORMAT!r}")
    trainable = [n for n, p in model.vision_model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"{what}: training from cached features needs a frozen vision tower; {len(trainable)} of its parameters "
            f"are trainable (e.g. {trainable[0]!r}): their gradients would be skipped and the cache would go stale"
        )
    if record["tokens"] == POOLED and model.config.cross_attention != "separable":
        raise ValueError(f"{what}: the cache holds pooled tokens, which feed separable cross-attention only; this "
                         "model uses full cross-attention: cache it with --model_name_or_path of this model")  # fmt: skip
    now = {"num_frames": int(num_frames), "vision_config_sha256": config_sha256(model.config.vision_config.to_dict()),
           "preprocessing": preprocessing_settings(processor)}  # fmt: skip
    problems = []
    if record["num_frames"] != now["num_frames"]:
        problems.append(f"it holds {record['num_frames']}-frame clips, this stream trains on {now['num_frames']} "
                        "(--num_frames)")  # fmt: skip
    if record["vision_config_sha256"] != now["vision_config_sha256"]:
        problems.append("its vision tower config differs")
    if not same_weights(record["vision_weights"], model.vision_model):
        dtypes = (record["vision_weights"]["dtype"], str(next(model.vision_model.parameters()).dtype)[6:])
        problems.append(f"its vision tower weights differ (cache tower {dtypes[0]}, this run's {dtypes[1]}"
                        + ("; a cache made in fp16 or bf16 serves that dtype and fp32: cache with --tower_dtype fp32"
                           if {"float16", "bfloat16"} == set(dtypes) else "") + ")")  # fmt: skip
    if record["preprocessing"] != now["preprocessing"]:
        keys = sorted(k for k in set(record["preprocessing"]) | set(now["preprocessing"])
                      if record["preprocessing"].get(k) != now["preprocessing"].get(k))  # fmt: skip
        diff = ", ".join(f"{k}: {record['preprocessing'].get(k)} (cache) vs {now['preprocessing'].get(k)} (run)"
                         for k in keys)  # fmt: skip
        problems.append(f"its preprocessing differs ({diff}; --image_size?)")
    if problems:
        raise ValueError(
            f"{what}: the feature cache was made by another vision tower than this run's (made from "
            f"{record.get('source')}): {'; '.join(problems)}. Rebuild it with datasets_scripts.cache_features from "
            "this run's model, or train from the frame shards"
        )


def footer_record(metadata: dict | None, path: str) -> bytes:
    """The record's JSON bytes in a cached shard's footer key-value metadata (~1 KB)."""
    if not metadata or METADATA_KEY not in metadata:
        raise ValueError(f"{path}: has a {FEATURES!r} column but no feature-cache record in its footer "
                         f"({METADATA_KEY.decode()}); write caches with datasets_scripts.cache_features")  # fmt: skip
    return metadata[METADATA_KEY]


def record_digest(record_json: bytes) -> str:
    """What two shards of one cache share: the record without `source` (jobs may name the same tower differently)."""
    record = {k: v for k, v in json.loads(record_json).items() if k != "source"}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def features_to_tensor(blobs: list[bytes], record: dict) -> torch.Tensor:
    """Rows' `features` bytes -> `(batch, *shape)` tensor of the cache's dtype. Raises ValueError on a size mismatch."""
    dtype, shape = np.dtype(record["dtype"]).newbyteorder("<"), tuple(record["shape"])
    expected = int(np.prod(shape)) * dtype.itemsize
    for blob in blobs:
        if not blob or len(blob) != expected:
            raise ValueError(f"features of {len(blob or b'')} bytes, expected {expected} ({shape} {record['dtype']})")
    array = np.stack([np.frombuffer(blob, dtype=dtype).reshape(shape) for blob in blobs])  # (B, *shape), a copy
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=False))


def model_visual_inputs(features: torch.Tensor, record: dict) -> dict:
    """A batch of cached features -> the model's keyword arguments for them."""
    if record["tokens"] == POOLED:
        return {"vision_pooled_states": features, "vision_num_frames": int(record["num_frames"])}
    if features.ndim == 3:  # TimeSformer's (B, 1 + s * t, D): the frame count splits the tokens
        return {"vision_hidden_states": features, "vision_num_frames": int(record["num_frames"])}
    return {"vision_hidden_states": features}  # frame-wise towers' (B, t, s, D)
