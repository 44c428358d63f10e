"""Cached-feature training (issue 13.3): `datasets_scripts.cache_features` writes the frozen tower's outputs to
parquet, `train.py`'s data path trains from those files; loss and adapter gradients equal training from pixels."""

import glob
import json
import os

import pytest
import torch
from accelerate import PartialState

from datasets_scripts import cache_features
from train import data as train_data
from train.data import VIDEO, ShardIndex, write_parquet_shard
from train.shapes import VOCABULARY, training_rows
from train.train import build_loader, load_model_and_processor, model_inputs, parse_args


NUM_ROWS, BATCH = 8, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model (saved), clean 4-frame caption shards, and their fp32 and fp16 caches made by the builder."""
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    root = tmp_path_factory.mktemp("feature_cache")
    build_tiny_frozencaptioner(root / "model", words=VOCABULARY, seed=0)
    os.makedirs(root / "frames" / "data")
    rows = training_rows(NUM_ROWS, "video", num_frames=4, seed=3)
    write_parquet_shard(root / "frames" / "data" / "clips.parquet", rows)
    for dtype in ("fp32", "fp16"):
        cache_features.main(["--input", str(root / "frames"), "--output_dir", str(root / f"cache_{dtype}"),
                             "--model_name_or_path", str(root / "model"), "--dtype", dtype, "--batch_size", "3"])  # fmt: skip
    return root


def _args(root, files, *extra):
    return parse_args(["--model_name_or_path", str(root / "model"), "--video_train_files", *files, "--p_image", "0",
                       "--video_batch_size", str(BATCH), "--output_dir", str(root / "run"), "--max_train_steps", "1",
                       "--dataloader_num_workers", "0", "--seed", "0", *extra])  # fmt: skip


def _first_batch(args, model, processor):
    """The first video batch through train.py's data path: build_loader -> stream plan -> parquet read -> collate."""
    loader = build_loader(args, PartialState(cpu=True), processor, None, model=model)
    item = next(iter(loader.streams[VIDEO]))
    return item["batch"], item["meta"]


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**model_inputs(batch, "cpu", torch.float32)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dtype,tolerance", [("fp32", 1e-5), ("fp16", 1e-3)])
def test_training_from_cache_equals_training_from_pixels(setup, monkeypatch, dtype, tolerance):
    pixel_args = _args(setup, [str(setup / "frames" / "data" / "*.parquet")])
    cache_args = _args(setup, [str(setup / f"cache_{dtype}" / "data" / "*.parquet")])
    model, processor = load_model_and_processor(pixel_args)
    model.train()  # as in training (the towers stay in eval mode)
    pixels, pixel_meta = _first_batch(pixel_args, model, processor)
    loss_pixels, grads_pixels = _loss_and_grads(model, pixels)

    tower_calls = []
    model.vision_model.register_forward_hook(lambda *_: tower_calls.append(1))

    def no_decoding(*_):
        raise AssertionError("a cached stream decoded JPEG frames")

    monkeypatch.setattr(train_data, "decode_frames", no_decoding)
    cached, cache_meta = _first_batch(cache_args, model, processor)
    assert cache_meta["ids"] == pixel_meta["ids"] and len(cache_meta["ids"]) == BATCH
    assert "pixel_values" not in cached and cached["vision_pooled_states"].shape == (BATCH, 4 + 16, 32)
    assert cached["vision_pooled_states"].dtype == {"fp32": torch.float32, "fp16": torch.float16}[dtype]
    loss_cached, grads_cached = _loss_and_grads(model, cached)
    assert tower_calls == []  # no tower forward
    assert abs(float(loss_cached - loss_pixels)) <= tolerance * abs(float(loss_pixels))
    assert grads_pixels.keys() == grads_cached.keys() and len(grads_pixels) > 10
    # relative error of all adapter gradients together: |g_cache - g_pixels| / |g_pixels| over the concatenation
    flat = [torch.cat([grads[n].reshape(-1) for n in grads_pixels]) for grads in (grads_cached, grads_pixels)]
    assert _rel(*flat) <= tolerance
    # key biases get no gradient in exact arithmetic (a softmax ignores a logit shift shared by all keys): noise
    per_tensor = {n: _rel(grads_cached[n], g) for n, g in grads_pixels.items() if not n.endswith("k_proj.bias")}
    print(
        f"{dtype}: loss rel {abs(float(loss_cached / loss_pixels - 1)):.2e}, gradients rel {_rel(*flat):.2e}, "
        f"worst tensor {max(per_tensor.values()):.2e} ({max(per_tensor, key=per_tensor.get)})"
    )
    # per tensor: fp32 within the same bound; fp16 rounding (2^-11 per value) reaches the small query gradients of the
    # time branch (they depend on differences between the t time keys) up to a few 1e-3
    assert max(per_tensor.values()) <= (tolerance if dtype == "fp32" else 5e-3)
    assert any(grad.norm() > 0 for name, grad in grads_pixels.items() if "k_proj" in name)  # visual path has gradient


@pytest.mark.parametrize(
    "change,match",
    [
        ("other_tower", "vision tower weights differ"),
        ("image_size", "preprocessing differs"),
        ("num_frames", "holds 4-frame clips, this stream trains on 2"),
    ],
)
def test_cache_of_another_tower_or_crop_is_refused(setup, tmp_path, change, match):
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    files = [str(setup / "cache_fp32" / "data" / "*.parquet")]
    if change == "other_tower":
        build_tiny_frozencaptioner(tmp_path / "other", words=VOCABULARY, seed=1)
        args = _args(setup, files)
        args.model_name_or_path = str(tmp_path / "other")
    else:
        args = _args(setup, files, *(["--image_size", "20"] if change == "image_size" else ["--num_frames", "2"]))
    model, processor = load_model_and_processor(args)
    with pytest.raises(ValueError, match=match):
        build_loader(args, PartialState(cpu=True), processor, None, model=model)


def test_builder_skips_corrupt_rows_resumes_and_refuses_another_tower(setup, tmp_path, caplog):
    os.makedirs(tmp_path / "in")
    rows = training_rows(5, "video", num_frames=4, seed=4)
    rows[2]["frames"] = [b"not a jpeg"] * 4
    write_parquet_shard(tmp_path / "in" / "a.parquet", rows)
    write_parquet_shard(tmp_path / "in" / "b.parquet", training_rows(3, "video", num_frames=2, seed=5))
    (tmp_path / "in" / "c.parquet").write_bytes(b"PAR1 truncated")  # an unreadable input shard: logged, skipped
    out = tmp_path / "cache"
    argv = ["--input", str(tmp_path / "in" / "*.parquet"), "--output_dir", str(out),
            "--model_name_or_path", str(setup / "model"), "--num_frames", "4"]  # fmt: skip
    first = cache_features.main(argv)
    assert (first["rows"], first["corrupt_rows"], first["short_frame_rows"], first["input_shards"]) == (7, 1, 3, 3)
    assert [e["stage"] for e in map(json.loads, open(out / "errors" / "c.jsonl"))] == ["read"]
    errors = [json.loads(line) for line in open(out / "errors" / "a.jsonl")]
    assert [e["id"] for e in errors] == [rows[2]["id"]] and errors[0]["stage"] == "decode"
    shards = sorted(glob.glob(str(out / "data" / "*.parquet")))
    index = ShardIndex.from_files(shards)
    assert index.num_rows == 7 and index.feature_record["num_frames"] == 4
    assert index.feature_record["shape"] == [4 + 16, 32] and index.feature_record["dtype"] == "float16"
    mtimes = {p: os.stat(p).st_mtime_ns for p in shards}

    again = cache_features.main(argv)  # both input shards are done: nothing is redone or touched
    assert again["rows"] == 0 and {p: os.stat(p).st_mtime_ns for p in shards} == mtimes
    os.remove(out / "_state" / "done" / "b.json")  # as if killed before b's marker: b is redone, once
    redo = cache_features.main(argv)
    assert (
        redo["rows"] == 3  # b's rows, once
        and ShardIndex.from_files(sorted(glob.glob(str(out / "data" / "*.parquet")))).num_rows == 7
    )

    with pytest.raises(SystemExit, match="other settings"):  # another frame count into the same folder
        cache_features.main(argv[:-1] + ["2"])
    assert ShardIndex.from_files(sorted(glob.glob(str(out / "data" / "*.parquet")))).num_rows == 7


def test_a_stream_is_all_frames_or_one_cache(setup):
    cache = glob.glob(str(setup / "cache_fp32" / "data" / "*.parquet"))
    frames = glob.glob(str(setup / "frames" / "data" / "*.parquet"))
    with pytest.raises(ValueError, match="mixes feature-cache shards"):
        ShardIndex.from_files(cache + frames)
    with pytest.raises(ValueError, match="different towers or settings"):
        ShardIndex.from_files(cache + glob.glob(str(setup / "cache_fp16" / "data" / "*.parquet")))


@pytest.mark.slow
def test_train_py_runs_and_resumes_from_a_cache(setup, tmp_path):
    """train.py end to end from the fp16 cache: 2 steps, checkpoint, stop, resume to 4 steps = 4 uninterrupted steps."""
    from train.train import main

    def argv(out):
        return ["--model_name_or_path", str(setup / "model"), "--video_train_files",
                str(setup / "cache_fp16" / "data" / "*.parquet"), "--p_image", "0", "--video_batch_size", "2",
                "--output_dir", str(out), "--max_train_steps", "4", "--dataloader_num_workers", "1",
                "--checkpointing_steps", "2", "--report_to", "none", "--logging_steps", "1"]  # fmt: skip

    def losses(out):
        return [json.loads(line)["loss"] for line in open(out / "logs" / "train_rank0.jsonl")]

    assert main(argv(tmp_path / "full")).endswith("model")
    assert main(argv(tmp_path / "cut") + ["--stop_after_steps", "2"]) is None
    assert main(argv(tmp_path / "cut") + ["--resume_from_checkpoint", "latest"]).endswith("model")
    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "full"), rel=1e-6)
    summary = json.loads((tmp_path / "cut" / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["rows_seen"] == 8


def test_tower_fingerprint_matches_across_dtypes_and_not_across_towers():
    """A cache made with the fp32 tower serves a run that loads it in fp16 / bf16; another tower never matches."""
    import copy

    from frozencaptioner.tiny import build_tiny_frozencaptioner
    from train.feature_cache import same_weights, weights_fingerprint

    tower = build_tiny_frozencaptioner(seed=0)[0].vision_model
    other = build_tiny_frozencaptioner(seed=1)[0].vision_model
    made = weights_fingerprint(tower)
    assert set(made["sha256"]) == {"float32", "float16", "bfloat16"}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert same_weights(made, copy.deepcopy(tower).to(dtype))
        assert not same_weights(made, copy.deepcopy(other).to(dtype))
    nudged = copy.deepcopy(tower)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-3  # one sampled value of a 'fine-tuned' tower
    assert not same_weights(made, nudged)
    made_fp16 = weights_fingerprint(copy.deepcopy(tower).half())
    assert same_weights(made_fp16, tower) and same_weights(made_fp16, copy.deepcopy(tower).half())


def test_index_of_50k_cached_shards_carries_one_record(setup):
    """The main process broadcasts the footers of every shard (train.py build_data_index): at 50K shards they carry a
    64-character record digest each and the record once (~1 KB), not 50K records."""
    import pickle

    index = ShardIndex.from_files(glob.glob(str(setup / "cache_fp16" / "data" / "*.parquet")))
    one = index.to_dict()
    many = ShardIndex.from_dict(
        {
            "files": [f"s{i:05d}.parquet" for i in range(50_000)],
            "footers": [json.loads(json.dumps(one["footers"][0])) for _ in range(50_000)],
            "feature_record": one["feature_record"],
        }  # fmt: skip
    )
    assert many.feature_record == index.feature_record and many.num_rows == 50_000 * NUM_ROWS
    per_shard = len(pickle.dumps(many.to_dict())) / 50_000
    print(f"broadcast bytes per cached shard: {per_shard:.0f}; record {len(json.dumps(index.feature_record))} bytes")
    assert per_shard < 400  # a record per footer would add > 1 KB each


def test_full_cross_attention_trains_from_cached_full_tokens(setup, tmp_path):
    """`cross_attention="full"`: the cache holds the tower's whole last_hidden_state; loss and gradients as from
    pixels (fp32), and pooled tokens are refused for such a model."""
    from frozencaptioner.tiny import build_tiny_frozencaptioner

    build_tiny_frozencaptioner(tmp_path / "full", words=VOCABULARY, seed=0, cross_attention="full")
    cache_features.main(["--input", str(setup / "frames"), "--output_dir", str(tmp_path / "cache"),
                         "--model_name_or_path", str(tmp_path / "full"), "--dtype", "fp32"])  # fmt: skip
    pixel_args = _args(setup, [str(setup / "frames" / "data" / "*.parquet")])
    cache_args = _args(setup, [str(tmp_path / "cache" / "data" / "*.parquet")])
    pooled_args = _args(setup, [str(setup / "cache_fp32" / "data" / "*.parquet")])
    for args in (pixel_args, cache_args, pooled_args):
        args.model_name_or_path = str(tmp_path / "full")
    model, processor = load_model_and_processor(pixel_args)
    model.train()
    pixels, pixel_meta = _first_batch(pixel_args, model, processor)
    cached, cache_meta = _first_batch(cache_args, model, processor)
    assert cache_meta["ids"] == pixel_meta["ids"]
    assert cached["vision_hidden_states"].shape == (BATCH, 1 + 16 * 4, 32) and cached["vision_num_frames"] == 4
    (loss_p, grads_p), (loss_c, grads_c) = _loss_and_grads(model, pixels), _loss_and_grads(model, cached)
    flat = [torch.cat([g[n].reshape(-1) for n in grads_p]) for g in (grads_c, grads_p)]
    assert abs(float(loss_c / loss_p - 1)) <= 1e-5 and _rel(*flat) <= 1e-5
    with pytest.raises(ValueError, match="pooled tokens, which feed separable cross-attention only"):
        _first_batch(pooled_args, model, processor)
