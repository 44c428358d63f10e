"""The original-TimeSformer converter (`frozencaptioner.convert_timesformer`), issue 13 point 1.

Synthetic checkpoints in the original repository's `.pyth` layout (`{"epoch", "model_state", "optimizer_state",
"cfg"}`, keys prefixed `model.` by the `vit_base_patch16_224` wrapper, a `head` classifier) are converted, reloaded
with `from_pretrained`, and compared with `reference_forward` below: our own forward written after the block
structure of facebookresearch/TimeSformer `timesformer/models/vit.py` (commit a5ef29a; the repository is CC-BY-NC,
so nothing is copied from it) that reads the ORIGINAL state dict, so a wrong key mapping cannot cancel out.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoVideoProcessor, OPTForCausalLM, TimesformerModel

from frozencaptioner.convert_timesformer import (
    convert_state_dict,
    convert_timesformer,
    load_original_checkpoint,
    resample_time_embeddings,
)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(hidden=32, layers=2, mlp=37, patch=4, grid=4, frames=96, heads=4, classes=7)
VIT_B16 = dict(hidden=768, layers=12, mlp=3072, patch=16, grid=14, frames=96, heads=12, classes=512)
CFG_YAML = """DATA:
  MEAN: [0.5, 0.4, 0.3]
  NUM_FRAMES: 96
  STD: [0.2, 0.25, 0.3]
  TRAIN_CROP_SIZE: {size}
MODEL:
  MODEL_NAME: vit_base_patch16_224
  NUM_CLASSES: {classes}
TIMESFORMER:
  ATTENTION_TYPE: divided_space_time
"""


# --------------------------------------------------------------------------------- synthetic original checkpoints
def original_state_dict(hidden, layers, mlp, patch, grid, frames, classes, seed=0, qkv_bias=True, **_):
    """Random weights with the original key layout (`model.` prefix). Linear weights ~ 1/sqrt(fan_in) so attention
    is far from uniform, LayerNorms away from (1, 0), `temporal_fc` non-zero, time embeddings large: a swapped or
    misplaced tensor changes the output well above float64 round-off."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    sd = {
        "cls_token": randn(1, 1, hidden, std=0.3),
        "pos_embed": randn(1, grid * grid + 1, hidden, std=0.3),
        "time_embed": randn(1, frames, hidden, std=0.5),
        "patch_embed.proj.weight": randn(hidden, 3, patch, patch, std=(3 * patch * patch) ** -0.5),
        "patch_embed.proj.bias": randn(hidden, std=0.1),
    }
    linears = {"attn.qkv": (3 * hidden, hidden), "attn.proj": (hidden, hidden), "temporal_attn.qkv": (3 * hidden, hidden), "temporal_attn.proj": (hidden, hidden), "temporal_fc": (hidden, hidden), "mlp.fc1": (mlp, hidden), "mlp.fc2": (hidden, mlp)}  # fmt: skip
    for i in range(layers):
        for norm in ("norm1", "temporal_norm1", "norm2"):
            sd[f"blocks.{i}.{norm}.weight"] = 1 + randn(hidden, std=0.2)
            sd[f"blocks.{i}.{norm}.bias"] = randn(hidden, std=0.2)
        for name, (out_f, in_f) in linears.items():
            sd[f"blocks.{i}.{name}.weight"] = randn(out_f, in_f, std=in_f**-0.5)
            if qkv_bias or not name.endswith("qkv"):
                sd[f"blocks.{i}.{name}.bias"] = randn(out_f, std=0.1)
    sd["norm.weight"] = 1 + randn(hidden, std=0.2)
    sd["norm.bias"] = randn(hidden, std=0.2)
    sd["head.weight"] = randn(classes, hidden, std=hidden**-0.5)
    sd["head.bias"] = randn(classes, std=0.1)
    return {f"model.{k}": v for k, v in sd.items()}


def save_pyth(path, state_dict, size, classes, optimizer=True):
    """What the original `save_checkpoint` writes (the cfg is a yacs YAML dump; SGD momentum per parameter)."""
    optimizer_state = {"state": {}, "param_groups": [{"lr": 0.005, "momentum": 0.9, "params": []}]}
    if optimizer:
        for i, v in enumerate(state_dict.values()):
            optimizer_state["state"][i] = {"momentum_buffer": torch.zeros_like(v)}
            optimizer_state["param_groups"][0]["params"].append(i)
    ckpt = {"epoch": 15, "model_state": state_dict, "optimizer_state": optimizer_state}
    ckpt["cfg"] = CFG_YAML.format(size=size, classes=classes)
    torch.save(ckpt, path)
    return str(path)


# --------------------------------------------------------------------------------- the reference forward
def nearest_rows(src: int, dst: int) -> list[int]:
    """PyTorch's (legacy) nearest resampling, which the original uses for time embeddings: row floor(i * src / dst)."""
    return [(i * src) // dst for i in range(dst)]


def _attention(x, sd, name, heads):
    """Multi-head self-attention over dim 1 of (batch', tokens, D), one fused qkv projection as in `vit.py`."""
    n, tokens, dim = x.shape
    qkv = F.linear(x, sd[f"{name}.qkv.weight"], sd.get(f"{name}.qkv.bias"))  # (n, tokens, 3D)
    q, k, v = qkv.reshape(n, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # 3 x (n, heads, tokens, hd)
    probs = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)  # (n, heads, tokens, tokens)
    out = (probs @ v).transpose(1, 2).reshape(n, tokens, dim)
    return F.linear(out, sd[f"{name}.proj.weight"], sd[f"{name}.proj.bias"])


def _norm(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)


def reference_forward(sd: dict, video: torch.Tensor, heads: int, tower_frames: int | None = None) -> torch.Tensor:
    """Original TimeSformer (divided space-time) on `video` (B, C, T, H, W) -> normed tokens (B, 1 + N*T, D).

    `sd` is the original state dict without prefix. `tower_frames` mimics building the original model with that
    many frames (`load_pretrained` resamples the checkpoint's time embeddings to it); an input with another frame
    count is resampled again at run time, as `forward_features` does.
    """
    batch, _, frames, height, width = video.shape
    time_embed = sd["time_embed"]  # (1, T0, D)
    if tower_frames is not None:
        time_embed = time_embed[:, nearest_rows(time_embed.shape[1], tower_frames)]
    time_embed = time_embed[:, nearest_rows(time_embed.shape[1], frames)]  # (1, T, D)

    # patch embedding, per frame
    x = video.permute(0, 2, 1, 3, 4).reshape(batch * frames, *video.shape[1:2], height, width)  # (B*T, C, H, W)
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=sd["patch_embed.proj.weight"].shape[-1])  # fmt: skip
    x = x.flatten(2).transpose(1, 2)  # (B*T, N, D)
    _, patches, dim = x.shape
    x = x + sd["pos_embed"][:, 1:]  # space positions, shared by all frames
    cls = (sd["cls_token"] + sd["pos_embed"][:, :1]).expand(batch, 1, dim)  # (B, 1, D): one CLS per video
    x = x.reshape(batch, frames, patches, dim) + time_embed[:, :, None]  # (B, T, N, D): time positions
    x = x.transpose(1, 2).reshape(batch, patches * frames, dim)  # (B, N*T, D): patch-major, frame-minor

    for i in range(max(int(k.split(".")[1]) for k in sd if k.startswith("blocks.")) + 1):
        blk = {k[len(f"blocks.{i}.") :]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        # temporal attention: every patch position attends over its T frames; CLS does not take part
        xt = x.reshape(batch * patches, frames, dim)  # (B*N, T, D)
        res_t = _attention(_norm(xt, blk, "temporal_norm1"), blk, "temporal_attn", heads)
        x = x + F.linear(res_t.reshape(batch, patches * frames, dim), blk["temporal_fc.weight"], blk["temporal_fc.bias"])  # fmt: skip
        # spatial attention: every frame, with its own copy of CLS, attends over its N patches
        xs = (
            x.reshape(batch, patches, frames, dim).transpose(1, 2).reshape(batch * frames, patches, dim)
        )  # (B*T, N, D)
        xs = torch.cat([cls.repeat_interleave(frames, dim=0), xs], dim=1)  # (B*T, 1+N, D)
        res_s = _attention(_norm(xs, blk, "norm1"), blk, "attn", heads)  # (B*T, 1+N, D)
        cls_res = res_s[:, 0].reshape(batch, frames, dim).mean(1, keepdim=True)  # (B, 1, D): CLS averaged over frames
        x_res = res_s[:, 1:].reshape(batch, frames, patches, dim).transpose(1, 2).reshape(batch, patches * frames, dim)
        h = torch.cat([cls, x], dim=1) + torch.cat([cls_res, x_res], dim=1)  # (B, 1+N*T, D)
        # MLP
        h = h + F.linear(F.gelu(F.linear(_norm(h, blk, "norm2"), blk["mlp.fc1.weight"], blk["mlp.fc1.bias"])), blk["mlp.fc2.weight"], blk["mlp.fc2.bias"])  # fmt: skip
        cls, x = h[:, :1], h[:, 1:]
    return _norm(torch.cat([cls, x], dim=1), sd, "norm")


def run_tower(model: TimesformerModel, video: torch.Tensor) -> torch.Tensor:
    """HF TimeSformer's layers reshape with `config.num_frames` (the FrozenCaptioner model re-points it per call);
    set it to the input's for this call. video: (B, T, C, H, W) -> last_hidden_state (B, 1 + N*T, D)."""
    saved = model.config.num_frames
    model.config.num_frames = video.shape[1]
    try:
        with torch.no_grad():
            return model(pixel_values=video).last_hidden_state
    finally:
        model.config.num_frames = saved


def _strip(sd):
    return {k.removeprefix("model."): v for k, v in sd.items()}


def _load(path, dtype=torch.float64):
    model, info = TimesformerModel.from_pretrained(path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"] or info["error_msgs"]), info
    return model.to(dtype).eval()


# --------------------------------------------------------------------------------- tiny: default suite
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny original checkpoint converted twice: at its own 96 frames (Python API) and `--num_frames 8` (CLI)."""
    root = tmp_path_factory.mktemp("convert_tiny")
    sd = original_state_dict(**TINY)
    ckpt = save_pyth(root / "tiny.pyth", sd, size=TINY["grid"] * TINY["patch"], classes=TINY["classes"])
    convert_timesformer(ckpt, str(root / "t96"), num_attention_heads=TINY["heads"])
    cli = subprocess.run(
        [sys.executable, "-m", "frozencaptioner.convert_timesformer", "--checkpoint", ckpt,
         "--output_dir", str(root / "t8"), "--num_frames", "8", "--num_attention_heads", str(TINY["heads"])],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT}, timeout=300,
    )  # fmt: skip
    return dict(root=root, ckpt=ckpt, sd=sd, t96=str(root / "t96"), t8=str(root / "t8"), cli=cli)


def test_cli_converts_reports_head_and_saves_a_loadable_folder(tiny):
    cli = tiny["cli"]
    assert cli.returncode == 0, cli.stderr
    assert "model.head.bias, model.head.weight" in cli.stderr  # reported, then dropped
    assert "time embeddings resampled 96 -> 8" in cli.stderr
    model = _load(tiny["t8"])
    c = model.config
    assert (c.num_frames, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (8, 32, 2, 4, 37)  # fmt: skip
    assert (c.image_size, c.patch_size, c.qkv_bias, c.layer_norm_eps, c.attention_type) == (16, 4, True, 1e-6, "divided_space_time")  # fmt: skip
    assert not any("head" in k or "classifier" in k for k in model.state_dict())
    # the 96-frame folder keeps every row; the 8-frame one holds rows 0, 12, ..., 84, bit for bit
    time_embed = tiny["sd"]["model.time_embed"]
    assert torch.equal(_load(tiny["t96"], torch.float32).embeddings.time_embeddings, time_embed)
    assert torch.equal(_load(tiny["t8"], torch.float32).embeddings.time_embeddings, time_embed[:, ::12])
    # train.py loads the video processor from the vision tower's folder: the checkpoint cfg's mean/std, native size
    processor = AutoVideoProcessor.from_pretrained(tiny["t8"])
    assert list(processor.image_mean) == [0.5, 0.4, 0.3] and list(processor.image_std) == [0.2, 0.25, 0.3]
    assert processor.crop_size["height"] == processor.crop_size["width"] == 16
    assert not [p for p in os.listdir(tiny["root"]) if ".tmp-" in p]  # no staging folder left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tiny["t8"]).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


@pytest.mark.parametrize(
    "folder, tower_frames, input_frames",
    [("t96", None, 8), ("t96", None, 2), ("t96", None, 1), ("t8", 8, 8), ("t8", 8, 3)],
    ids=["96f-tower-on-8", "96f-tower-on-2", "96f-tower-on-1", "8f-tower-on-8", "8f-tower-on-3"],
)
def test_converted_tower_equals_reference_forward(tiny, folder, tower_frames, input_frames):
    model = _load(tiny[folder])
    video = torch.randn(2, input_frames, 3, 16, 16, generator=torch.Generator().manual_seed(input_frames))
    video = video.double()
    sd = {k: v.double() for k, v in _strip(tiny["sd"]).items()}
    expected = reference_forward(
        sd, video.transpose(1, 2), TINY["heads"], tower_frames
    )  # original layout (B, C, T, H, W)
    got = run_tower(model, video)
    assert got.shape == (2, 1 + 16 * input_frames, 32)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("frames", [8, 5])
def test_resampled_tower_equals_full_tower_exactly(tiny, tmp_path, frames):
    """The `--num_frames T` tower on T frames == the 96-frame tower on T frames, bit for bit, also through the
    FrozenCaptioner model (its per-call geometry) loaded with `from_pretrained_backbones` as `train.py` does.
    T = 5 is a non-integer ratio (rows 0, 19, 38, 57, 76)."""
    from frozencaptioner.tiny import tiny_config
    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration

    folder = tiny["t8"] if frames == 8 else str(tmp_path / "t5")
    if frames != 8:
        convert_timesformer(tiny["ckpt"], folder, num_frames=frames, num_attention_heads=TINY["heads"])
    full, resampled = _load(tiny["t96"], torch.float32), _load(folder, torch.float32)
    video = torch.randn(2, frames, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(run_tower(resampled, video), run_tower(full, video))

    config = tiny_config(vocab_size=50)
    OPTForCausalLM(config.text_config).save_pretrained(tmp_path / "opt")
    kwargs = dict(adapter_layers=[2, 3], adapter_hidden_size=32, adapter_num_heads=4, adapter_ffn_multiplier=2)
    towers = [
        FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(path, str(tmp_path / "opt"), **kwargs)
        for path in (tiny["t96"], folder)
    ]
    assert [t.config.num_frames for t in towers] == [96, frames]
    outs = [t.eval().get_video_features(video).last_hidden_state for t in towers]
    assert torch.equal(outs[0], outs[1])


def test_nearest_resampling_composes_only_for_whole_ratios():
    table = torch.arange(96.0).reshape(1, 96, 1)

    def rows(t):
        return t.flatten().int().tolist()

    assert rows(resample_time_embeddings(table, 8)) == nearest_rows(96, 8) == list(range(0, 96, 12))
    assert rows(resample_time_embeddings(table, 5)) == nearest_rows(96, 5) == [0, 19, 38, 57, 76]
    assert rows(resample_time_embeddings(resample_time_embeddings(table, 8), 4)) == [0, 24, 48, 72]
    assert rows(resample_time_embeddings(resample_time_embeddings(table, 8), 3)) == [0, 24, 60]  # README's caveat
    assert rows(resample_time_embeddings(table, 3)) == [0, 32, 64]
    assert rows(resample_time_embeddings(table[:, :8], 16)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    half = resample_time_embeddings(table.half(), 8)
    assert half.dtype == torch.float16 and half.is_contiguous()


# --------------------------------------------------------------------------------- bad input
def _mutate(sd, drop=(), add=None, reshape=None):
    sd = {k: v for k, v in sd.items() if k not in drop}
    sd.update(add or {})
    for k, shape in (reshape or {}).items():
        sd[k] = torch.zeros(shape)
    return sd


@pytest.mark.parametrize(
    "mutation, message",
    [
        (dict(add={"model.blocks.0.extra.weight": torch.zeros(3)}), "unexpected keys ['model.blocks.0.extra.weight']"),
        (dict(add={"model.fc_norm.weight": torch.zeros(3)}), "unexpected keys ['model.fc_norm.weight']"),
        (dict(drop=["model.blocks.1.temporal_fc.bias"]), "missing keys ['model.blocks.1.temporal_fc.bias']"),
        (dict(drop=["model.norm.weight"]), "missing keys ['model.norm.weight']"),
        (
            dict(reshape={"model.blocks.1.mlp.fc2.weight": (32, 40)}),
            "model.blocks.1.mlp.fc2.weight (32, 40) (expected (32, 37))",
        ),  # fmt: skip
        (dict(reshape={"model.pos_embed": (1, 16, 32)}), "model.pos_embed has 15 patch positions, not a square grid"),
        (dict(drop=["model.time_embed"]), "only divided_space_time is supported"),
        (dict(drop=["model.patch_embed.proj.weight"]), "missing keys ['model.patch_embed.proj.weight']"),
    ],
    ids=[
        "unknown-block-key",
        "unknown-top-key",
        "missing-block-key",
        "missing-final-norm",
        "shape",
        "pos-grid",
        "no-time",
        "no-patch",
    ],  # fmt: skip
)
def test_bad_keys_are_errors_naming_them(tiny, mutation, message):
    with pytest.raises(ValueError) as e:
        convert_state_dict(_mutate(tiny["sd"], **mutation), num_attention_heads=4)
    assert message in str(e.value)


def test_space_only_checkpoint_and_bad_heads_are_refused(tiny):
    space_only = {k: v for k, v in tiny["sd"].items() if "temporal" not in k and "time_embed" not in k}
    with pytest.raises(ValueError, match="only divided_space_time is supported"):
        convert_state_dict(space_only, num_attention_heads=4)
    with pytest.raises(ValueError, match="not divisible by num_attention_heads=0; pass --num_attention_heads"):
        convert_state_dict(tiny["sd"])  # hidden 32 // 64 = 0 heads
    with pytest.raises(ValueError, match="not divisible by num_attention_heads=5"):
        convert_state_dict(tiny["sd"], num_attention_heads=5)


def test_prefixes_and_bare_state_dicts_convert_alike(tiny, tmp_path):
    """`model.` (wrapper), `module.model.` (DDP) and no prefix give the same weights; a legacy (non-zip) file loads;
    a bare state dict file (no `model_state`, no `cfg`) converts with the original's default normalisation."""
    bare = _strip(tiny["sd"])
    ref, _, dropped = convert_state_dict(tiny["sd"], num_attention_heads=4)
    assert dropped == ["model.head.bias", "model.head.weight"]
    for variant in (bare, {f"module.model.{k}": v for k, v in bare.items()}):
        got, _, _ = convert_state_dict(variant, num_attention_heads=4)
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    mixed = {**bare, "model.cls_token": bare["cls_token"]}
    with pytest.raises(ValueError, match=r"unexpected keys \['model.cls_token'\]"):
        convert_state_dict(mixed, num_attention_heads=4)
    no_bias = {k: v for k, v in bare.items() if not k.endswith("qkv.bias")}
    _, config, _ = convert_state_dict(no_bias, num_attention_heads=4)
    assert config.qkv_bias is False
    torch.save({"model_state": tiny["sd"]}, tmp_path / "legacy.pyth", _use_new_zipfile_serialization=False)
    legacy, cfg = load_original_checkpoint(str(tmp_path / "legacy.pyth"))  # pre-1.6 format: read without mmap
    assert cfg is None and legacy.keys() == tiny["sd"].keys()
    assert all(torch.equal(legacy[k], v) for k, v in tiny["sd"].items())
    torch.save(bare, tmp_path / "bare.pth")
    convert_timesformer(str(tmp_path / "bare.pth"), str(tmp_path / "out"), num_attention_heads=4)
    assert list(AutoVideoProcessor.from_pretrained(tmp_path / "out").image_mean) == [0.45, 0.45, 0.45]


class NotATensor:
    pass


def test_unsafe_or_foreign_files_are_refused_and_existing_output_is_kept(tiny, tmp_path):
    torch.save({"model_state": {"model.cls_token": NotATensor()}}, tmp_path / "pickled.pyth")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_original_checkpoint(str(tmp_path / "pickled.pyth"))
    torch.save({"model_state": {"model.cls_token": torch.zeros(1), "model.epoch": 3}}, tmp_path / "mixed.pyth")
    with pytest.raises(ValueError, match=r"non-tensor entries \['model.epoch'\]"):
        load_original_checkpoint(str(tmp_path / "mixed.pyth"))
    with pytest.raises(FileNotFoundError):
        load_original_checkpoint(str(tmp_path / "absent.pyth"))
    sd = dict(tiny["sd"])
    save_pyth(tmp_path / "joint.pyth", sd, size=16, classes=7, optimizer=False)
    ckpt = torch.load(tmp_path / "joint.pyth", weights_only=True)
    ckpt["cfg"] = ckpt["cfg"].replace("divided_space_time", "joint_space_time")
    torch.save(ckpt, tmp_path / "joint.pyth")
    with pytest.raises(ValueError, match="ATTENTION_TYPE is 'joint_space_time'"):
        convert_timesformer(str(tmp_path / "joint.pyth"), str(tmp_path / "joint_out"), num_attention_heads=4)
    assert not os.path.exists(tmp_path / "joint_out")

    # an existing, non-empty output folder is never overwritten (CLI: exit 1, message, files untouched)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.json").write_text("{}")
    from frozencaptioner.convert_timesformer import main

    assert main(["--checkpoint", tiny["ckpt"], "--output_dir", str(out), "--num_attention_heads", "4"]) == 1
    assert os.listdir(out) == ["config.json"] and (out / "config.json").read_text() == "{}"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--checkpoint", tiny["ckpt"], "--output_dir", str(empty), "--num_attention_heads", "4"]) == 0
    assert {"config.json", "model.safetensors", "video_preprocessor_config.json"} <= set(os.listdir(empty))


# --------------------------------------------------------------------------------- ViT-B/16, 96 frames: slow
@pytest.mark.slow
def test_vit_b16_96_frames(tmp_path, caplog):
    """The paper's encoder shape: ViT-B/16 at 224 px with 96 time embeddings (heads from the default 768 // 64).
    The 96-frame tower on 2 frames equals the reference (float32: float64 doubles time and memory at this size).
    The `--num_frames 8` tower equals the 96-frame tower on 8 frames: every weight but the time embeddings is
    identical and the embedding outputs on 8 frames are equal bit for bit, so the layers above, the same
    deterministic function of both, give equal outputs (the full 8-frame forward is compared in the default suite's
    `test_resampled_tower_equals_full_tower_exactly`; here it would cost two 8-frame ViT-B forwards, ~20 s)."""
    sd = original_state_dict(**VIT_B16)
    ckpt = save_pyth(tmp_path / "vit_b16.pyth", sd, size=224, classes=VIT_B16["classes"], optimizer=False)
    with caplog.at_level("INFO", logger="frozencaptioner.convert_timesformer"):
        convert_timesformer(ckpt, str(tmp_path / "t96"))
        convert_timesformer(ckpt, str(tmp_path / "t8"), num_frames=8)
    assert "dropped the classification head: model.head.bias, model.head.weight" in caplog.text
    full = _load(str(tmp_path / "t96"), torch.float32)
    c = full.config
    assert (c.num_frames, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (96, 768, 12, 12, 3072)  # fmt: skip
    assert (c.image_size, c.patch_size, c.layer_norm_eps, c.qkv_bias) == (224, 16, 1e-6, True)

    video = torch.randn(1, 2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    expected = reference_forward(_strip(sd), video.transpose(1, 2), heads=12)  # (1, 1 + 196 * 2, 768)
    torch.testing.assert_close(run_tower(full, video), expected, rtol=1e-4, atol=1e-4)

    resampled = _load(str(tmp_path / "t8"), torch.float32)
    full_sd, resampled_sd = full.state_dict(), resampled.state_dict()
    assert resampled_sd.keys() == full_sd.keys()
    assert [k for k in full_sd if not torch.equal(full_sd[k], resampled_sd[k])] == ["embeddings.time_embeddings"]
    assert torch.equal(resampled_sd["embeddings.time_embeddings"], sd["model.time_embed"][:, ::12])
    video = torch.randn(2, 8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the embeddings resample at run time from the input's frame count (no config needed)
        assert torch.equal(resampled.embeddings(video), full.embeddings(video))  # (2, 1 + 196 * 8, 768)
