"""Convert an original facebookresearch/TimeSformer checkpoint to transformers' `TimesformerModel`.

The paper's encoder is `TimeSformer_divST_96x32_224_HowTo100M.pyth` (divided space-time attention, ViT-B/16, 96
frames at 224 px), released only in the original repository's format; the Hub has Kinetics/SSv2 TimeSformers, and
transformers 5 ships no conversion script. This one writes a folder that `TimesformerModel.from_pretrained`,
`FrozenCaptionerForConditionalGeneration.from_pretrained_backbones` and `train.py --vision_model_name_or_path` load:

```
python -m frozencaptioner.convert_timesformer --checkpoint TimeSformer_divST_96x32_224_HowTo100M.pyth \
    --output_dir timesformer-howto100m-8f --num_frames 8
```

- **Input.** The `model_state` of a `.pyth` (what the original `save_checkpoint` writes next to `epoch`,
  `optimizer_state` and `cfg`), or a bare state dict, read with `torch.load(weights_only=True)` (no arbitrary
  unpickling) and memory-mapped, so the optimizer state in the file is never read into RAM. Key prefixes `model.` (the
  `vit_base_patch16_224` wrapper) and `module.` (DDP) are stripped when every key has them.
- **Keys.** `model.head.*` (the Kinetics/HowTo100M classifier) is reported and dropped; any other unexpected or
  missing key, or a shape that does not fit, is a `ValueError` naming it. Nothing is written before every check
  passed, and the folder appears in one rename, so a killed conversion leaves no half-written model behind.
- **Geometry** comes from the weights: width from `cls_token`, patch from `patch_embed.proj`, image size from
  `pos_embed`, depth from `blocks.*`, MLP width from `mlp.fc1`, `qkv_bias` from whether `attn.qkv.bias` exists. The
  head count is not stored in the weights: `--num_attention_heads`, default `hidden_size // 64` (ViT's head width 64:
  12 heads for ViT-B, the width of every released TimeSformer). LayerNorm eps is the original's 1e-6.
- **Time embeddings** are resampled to `--num_frames` (default: the checkpoint's own count) with exactly the operation
  that both the original (`load_pretrained`, and `forward_features` at run time) and transformers'
  `TimesformerEmbeddings` apply when the frame count differs: `F.interpolate(..., mode="nearest")` on the
  `(1, D, frames)` view, i.e. row `floor(i * T0 / T)` for output frame `i`. Nearest resampling selects rows and does no
  arithmetic, so the `--num_frames 8` tower on 8 frames adds the very rows (0, 12, ..., 84 of 96) that the 96-frame
  tower picks at run time for an 8-frame input; every other weight is copied unchanged, so the two outputs are equal
  bit for bit. Resampling twice is not always resampling once: a tower converted to T frames and run on T' frames
  uses original row `floor(floor(i * T / T') * T0 / T)`, the same as the T0-frame tower's `floor(i * T0 / T')` when
  the ratios are whole numbers (96 -> 8 -> 4: rows 0, 24, 48, 72 both ways), not otherwise (96 -> 8 -> 3: rows
  0, 24, 60 instead of 0, 32, 64). Convert to the frame count you train with.
- **Pre-processing.** A `VideoMAEVideoProcessor` with the checkpoint's `cfg` `DATA.MEAN` / `DATA.STD` (the original's
  defaults 0.45 / 0.225 when the file has no `cfg`) at the native image size is saved next to the model, because
  `train.py` loads `AutoVideoProcessor` from the vision tower's folder.

Mapping (original -> transformers `TimesformerModel`; the fused `qkv` projections keep their layout, since
transformers' `TimesformerSelfAttention` reshapes one `qkv` Linear into (3, heads, head_dim) exactly like the
original `Attention`):

| original | transformers |
|---|---|
| `cls_token`, `pos_embed`, `time_embed` | `embeddings.cls_token`, `.position_embeddings`, `.time_embeddings` |
| `patch_embed.proj` | `embeddings.patch_embeddings.projection` |
| `blocks.i.norm1`, `.attn.qkv`, `.attn.proj` | `encoder.layer.i.layernorm_before`, `.attention.attention.qkv`, `.attention.output.dense` |
| `blocks.i.temporal_norm1`, `.temporal_attn.qkv`, `.temporal_attn.proj` | `.temporal_layernorm`, `.temporal_attention.attention.qkv`, `.temporal_attention.output.dense` |
| `blocks.i.temporal_fc` | `.temporal_dense` |
| `blocks.i.norm2`, `.mlp.fc1`, `.mlp.fc2` | `.layernorm_after`, `.intermediate.dense`, `.output.dense` |
| `norm` (applied before the head) | `layernorm` (applied to every output token) |
| `head` | dropped |
"""

import argparse
import logging
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
import zipfile

import torch
import torch.nn.functional as F
import transformers
from transformers import TimesformerConfig, TimesformerModel, VideoMAEVideoProcessor

from frozencaptioner.cli import _positive_int


logger = logging.getLogger(__name__)

# The original builds every TimeSformer with `partial(nn.LayerNorm, eps=1e-6)`; eps is not in the state dict.
LAYER_NORM_EPS = 1e-6
# The original's `_C.DATA.MEAN` / `_C.DATA.STD` defaults, used when the checkpoint carries no `cfg`.
DEFAULT_MEAN = [0.45, 0.45, 0.45]
DEFAULT_STD = [0.225, 0.225, 0.225]

EMBEDDING_KEYS = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "time_embed": "embeddings.time_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
# Per block: original module -> transformers module (each has a weight and a bias; `qkv` may lack its bias).
BLOCK_MODULES = {
    "norm1": "layernorm_before",
    "attn.qkv": "attention.attention.qkv",
    "attn.proj": "attention.output.dense",
    "temporal_norm1": "temporal_layernorm",
    "temporal_attn.qkv": "temporal_attention.attention.qkv",
    "temporal_attn.proj": "temporal_attention.output.dense",
    "temporal_fc": "temporal_dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
HEAD_PREFIX = "head."
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$")


def load_original_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read a TimeSformer `.pyth` with `torch.load(weights_only=True)`.

    Returns `(state_dict, cfg_yaml)`: the `model_state` (or the file itself when it is a bare state dict) and the
    `cfg` YAML string the original trainer stores, or `None`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # mmap (zip-format files, torch >= 1.6): tensors are paged in when read, so the optimizer state is never loaded.
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True) ({e}). The converter never unpickles arbitrary "
            "objects; in an environment you trust, re-save it with torch.save({'model_state': state_dict}, path)."
        ) from e
    if not isinstance(ckpt, dict):
        raise ValueError(
            f"{path}: expected a dict (a .pyth with 'model_state', or a state dict), got {type(ckpt).__name__}"
        )
    cfg = ckpt.get("cfg") if isinstance(ckpt.get("cfg"), str) else None
    state_dict = ckpt.get("model_state", ckpt)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{path}: 'model_state' is not a non-empty state dict (top-level keys: {sorted(ckpt)})")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        where = "its 'model_state'" if "model_state" in ckpt else "it (no 'model_state' key)"
        raise ValueError(f"{path}: {where} has non-tensor entries {not_tensors[:10]}; is this a TimeSformer .pyth?")
    return dict(state_dict), cfg


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Drop DDP's `module.` and the `vit_base_patch16_224` wrapper's `model.` when every key carries them."""
    prefix = ""
    for p in ("module.", "model."):
        if all(k.startswith(p) for k in state_dict):
            state_dict = {k[len(p) :]: v for k, v in state_dict.items()}
            prefix += p
    return state_dict, prefix


def original_keys(num_layers: int, qkv_bias: bool = True) -> list[str]:
    """Every key (without prefix) of a divided space-time TimeSformer backbone of `num_layers` blocks, head excluded."""
    keys = list(EMBEDDING_KEYS)
    for i in range(num_layers):
        for module in BLOCK_MODULES:
            keys.append(f"blocks.{i}.{module}.weight")
            if qkv_bias or not module.endswith("qkv"):
                keys.append(f"blocks.{i}.{module}.bias")
    return keys


def rename_key(key: str) -> str:
    """Original key (without prefix, not `head.*`) -> `TimesformerModel` key. Raises `KeyError` for unknown keys."""
    if key in EMBEDDING_KEYS:
        return EMBEDDING_KEYS[key]
    m = _BLOCK_KEY.match(key)
    if m is None or m.group(2) not in BLOCK_MODULES:
        raise KeyError(key)
    return f"encoder.layer.{m.group(1)}.{BLOCK_MODULES[m.group(2)]}.{m.group(3)}"


def resample_time_embeddings(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Nearest resampling of `(1, T0, D)` time embeddings to `(1, num_frames, D)`: row `floor(i * T0 / num_frames)`.

    The same call as the original (`load_pretrained` / `forward_features`) and transformers' `TimesformerEmbeddings`
    make at run time, so a tower converted to `num_frames` equals the `T0`-frame tower run on `num_frames` frames.
    """
    if time_embed.shape[1] == num_frames:
        return time_embed.clone()
    # fp16/bf16 -> fp32 -> back is exact, and nearest only selects rows: the result has the checkpoint's exact values.
    resampled = F.interpolate(time_embed.float().transpose(1, 2), size=num_frames, mode="nearest")  # (1, D, T)
    return resampled.transpose(1, 2).to(time_embed.dtype).contiguous()  # (1, T, D)


def _require(state_dict: dict[str, torch.Tensor], prefix: str, keys: list[str]) -> None:
    missing = [prefix + k for k in keys if k not in state_dict]
    if missing:
        raise ValueError(f"not a TimeSformer checkpoint: missing keys {missing}")


def _cfg_lookup(cfg: dict, section: str, name: str):
    value = cfg.get(section) if isinstance(cfg, dict) else None
    return value.get(name) if isinstance(value, dict) else None


def parse_original_cfg(cfg_yaml: str | None) -> dict:
    """The checkpoint's training config (a yacs dump), `{}` when absent or unreadable."""
    if not cfg_yaml:
        return {}
    import yaml  # a transformers dependency

    try:
        cfg = yaml.safe_load(cfg_yaml)
    except yaml.YAMLError as e:
        logger.warning("ignoring the checkpoint's cfg (not YAML: %s)", e)
        return {}
    return cfg if isinstance(cfg, dict) else {}


def infer_config(
    state_dict: dict[str, torch.Tensor],
    num_frames: int | None = None,
    num_attention_heads: int | None = None,
    prefix: str = "",
) -> TimesformerConfig:
    """A `TimesformerConfig` for an original divided space-time state dict (prefix already stripped; `prefix` is only
    used in error messages)."""
    if not any(k.startswith("blocks.") and ".temporal_" in k for k in state_dict) or "time_embed" not in state_dict:
        raise ValueError(
            "this checkpoint has no temporal attention (a space_only or joint_space_time TimeSformer, or not a "
            "TimeSformer); only divided_space_time is supported, the attention of the paper's encoder"
        )
    _require(state_dict, prefix, ["cls_token", "pos_embed", "time_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"])  # fmt: skip
    hidden_size = state_dict["cls_token"].shape[-1]
    proj = state_dict["patch_embed.proj.weight"]  # (D, C, p, p)
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise ValueError(f"{prefix}patch_embed.proj.weight: expected a square Conv2d kernel (D, C, p, p), got {tuple(proj.shape)}")  # fmt: skip
    num_patches = state_dict["pos_embed"].shape[1] - 1
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f"{prefix}pos_embed has {num_patches} patch positions, not a square grid")
    layers = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
    num_layers = max(layers) + 1  # a gap shows up below as missing keys of that block
    heads = num_attention_heads or hidden_size // 64
    if heads < 1 or hidden_size % heads:
        raise ValueError(f"hidden size {hidden_size} is not divisible by num_attention_heads={heads}; pass --num_attention_heads")  # fmt: skip
    trained_frames = state_dict["time_embed"].shape[1]
    return TimesformerConfig(
        image_size=grid * proj.shape[-1],
        patch_size=proj.shape[-1],
        num_channels=proj.shape[1],
        num_frames=num_frames or trained_frames,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        hidden_act="gelu",  # nn.GELU(): the exact erf form
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=LAYER_NORM_EPS,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        attention_type="divided_space_time",
    )


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], num_frames: int | None = None, num_attention_heads: int | None = None
) -> tuple[dict[str, torch.Tensor], TimesformerConfig, list[str]]:
    """Original TimeSformer state dict -> `(TimesformerModel state dict, config, dropped keys)`.

    Args:
        state_dict (`dict[str, torch.Tensor]`): a `model_state`, with or without the `model.` / `module.` prefix.
        num_frames (`int`, *optional*): frame count of the converted tower; default the checkpoint's.
        num_attention_heads (`int`, *optional*): default `hidden_size // 64`.

    Raises `ValueError` naming every unexpected or missing key and every shape that does not fit.
    """
    state_dict, prefix = _strip_prefixes(state_dict)
    dropped = sorted(prefix + k for k in state_dict if k.startswith(HEAD_PREFIX))
    backbone = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIX)}
    config = infer_config(backbone, num_frames, num_attention_heads, prefix)
    expected = original_keys(config.num_hidden_layers, config.qkv_bias)
    unexpected = sorted(prefix + k for k in backbone.keys() - set(expected))
    missing = [prefix + k for k in expected if k not in backbone]
    if unexpected or missing:
        raise ValueError(
            f"cannot convert: unexpected keys {unexpected}, missing keys {missing} "
            f"(a divided space-time TimeSformer with {config.num_hidden_layers} blocks, qkv_bias={config.qkv_bias})"
        )
    converted = {rename_key(k): v for k, v in backbone.items()}
    converted["embeddings.time_embeddings"] = resample_time_embeddings(backbone["time_embed"], config.num_frames)

    with torch.device("meta"):
        reference = TimesformerModel(config).state_dict()
    if reference.keys() != converted.keys():  # the installed transformers renamed something: fail, do not guess
        raise ValueError(
            f"transformers {transformers.__version__} TimesformerModel keys differ from the mapping: "
            f"not produced {sorted(reference.keys() - converted.keys())}, not in the model {sorted(converted.keys() - reference.keys())}"
        )
    inverse = {rename_key(k): prefix + k for k in expected}
    bad_shapes = [
        f"{inverse[k]} {tuple(v.shape)} (expected {tuple(reference[k].shape)})"
        for k, v in converted.items()
        if v.shape != reference[k].shape
    ]
    if bad_shapes:
        raise ValueError(f"cannot convert: shapes do not fit one {config.num_hidden_layers}-block model: {bad_shapes}")
    return converted, config, dropped


def _check_output_dir(output_dir: str) -> None:
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise FileExistsError(f"--output_dir {output_dir} exists and is not an empty folder; choose another one")


def convert_timesformer(
    checkpoint: str, output_dir: str, num_frames: int | None = None, num_attention_heads: int | None = None
) -> TimesformerModel:
    """Convert `checkpoint` (original `.pyth`) and save a `TimesformerModel` + video processor to `output_dir`.

    Returns the converted model (on CPU, in the checkpoint's dtype).
    """
    _check_output_dir(output_dir)  # before the (long) load, so a typo costs nothing
    state_dict, cfg_yaml = load_original_checkpoint(checkpoint)
    cfg = parse_original_cfg(cfg_yaml)
    attention_type = _cfg_lookup(cfg, "TIMESFORMER", "ATTENTION_TYPE")
    if attention_type not in (None, "divided_space_time"):
        raise ValueError(f"{checkpoint}: cfg TIMESFORMER.ATTENTION_TYPE is {attention_type!r}; only divided_space_time is supported")  # fmt: skip
    converted, config, dropped = convert_state_dict(state_dict, num_frames, num_attention_heads)
    trained_frames = _strip_prefixes(state_dict)[0]["time_embed"].shape[1]
    cfg_frames = _cfg_lookup(cfg, "DATA", "NUM_FRAMES")
    if cfg_frames is not None and cfg_frames != trained_frames:
        logger.warning(
            "cfg DATA.NUM_FRAMES=%s but time_embed has %d rows; using the weights", cfg_frames, trained_frames
        )
    if dropped:
        logger.info("dropped the classification head: %s", ", ".join(dropped))
    if config.num_frames != trained_frames:
        how = "nearest rows" if config.num_frames < trained_frames else "nearest, rows repeated"
        logger.info("time embeddings resampled %d -> %d frames (%s)", trained_frames, config.num_frames, how)
    logger.info(
        "TimeSformer: %d blocks, hidden %d, %d heads, patch %d, image %d, %d frames, qkv_bias=%s",
        config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.patch_size,
        config.image_size, config.num_frames, config.qkv_bias,
    )  # fmt: skip

    with torch.device("meta"):  # no random init of ~120M parameters that are overwritten at once
        model = TimesformerModel(config)
    model.load_state_dict(converted, strict=True, assign=True)
    model.eval()
    mean = _cfg_lookup(cfg, "DATA", "MEAN") or DEFAULT_MEAN
    std = _cfg_lookup(cfg, "DATA", "STD") or DEFAULT_STD
    processor = VideoMAEVideoProcessor(
        size={"shortest_edge": config.image_size},
        crop_size={"height": config.image_size, "width": config.image_size},
        image_mean=list(mean),
        image_std=list(std),
    )

    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it 0700; the model folder is shared like any other
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        _check_output_dir(output_dir)  # again: it may have been filled while we converted
        os.replace(staging, output_dir)  # one rename: the folder is complete or absent
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    logger.info("saved %s", output_dir)
    return model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m frozencaptioner.convert_timesformer",
        description="Convert an original facebookresearch/TimeSformer .pyth (divided space-time) to transformers' "
        "TimesformerModel + a video processor, saved with save_pretrained.",
    )
    parser.add_argument("--checkpoint", required=True, help="the original .pyth (its model_state), or a state dict")
    parser.add_argument("--output_dir", required=True, help="new or empty folder to write")
    parser.add_argument(
        "--num_frames", type=_positive_int, default=None,
        help="frames of the converted tower; time embeddings are resampled by nearest (default: the checkpoint's)",
    )  # fmt: skip
    parser.add_argument(
        "--num_attention_heads", type=_positive_int, default=None,
        help="not stored in the weights; default hidden_size // 64 (12 for ViT-B, every released TimeSformer)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        convert_timesformer(args.checkpoint, args.output_dir, args.num_frames, args.num_attention_heads)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
