"""Hub loading: save_pretrained writes the remote-code folder; a fresh offline process loads it from that folder."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from frozencaptioner.tiny import build_tiny_frozencaptioner


def test_saved_folder_layout(tiny_model_dir):
    files = set(os.listdir(tiny_model_dir))
    assert {"config.json", "model.safetensors", "configuration_frozencaptioner.py", "modeling_frozencaptioner.py",
            "processing_frozencaptioner.py", "processor_config.json", "tokenizer.json",
            "generation_config.json"} <= files  # fmt: skip
    assert not any(f.endswith(".bin") for f in files)
    auto_map = json.load(open(os.path.join(tiny_model_dir, "config.json")))["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_frozencaptioner.FrozenCaptionerConfig",
        "AutoModel": "modeling_frozencaptioner.FrozenCaptionerForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_frozencaptioner.FrozenCaptionerForConditionalGeneration",
    }
    processor_config = json.load(open(os.path.join(tiny_model_dir, "processor_config.json")))
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_frozencaptioner.FrozenCaptionerProcessor"


def test_fresh_offline_process_loads_remote_code_and_reproduces_logits(tmp_path):
    model, processor = build_tiny_frozencaptioner(seed=7)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)  # plain save_pretrained: what Trainer, accelerate and peft call
    processor.save_pretrained(model_dir)
    # a bogus .bin beside the safetensors: only safetensors may be read
    (model_dir / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    batch = processor(videos=[torch.randint(0, 255, (6, 20, 20, 3), dtype=torch.uint8).numpy()], text=["a red bar"])
    torch.save(dict(batch), tmp_path / "batch.pt")
    with torch.no_grad():
        torch.save(model.eval()(**batch).logits, tmp_path / "logits.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        other = AutoModelForImageTextToText.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        assert "modeling_frozencaptioner" not in sys.modules, "installed package was imported"
        for obj in (model, other, processor):
            assert type(obj).__module__.startswith("transformers_modules."), type(obj).__module__
        trainable = {{n for n, p in model.named_parameters() if p.requires_grad}}
        assert trainable and all(n.startswith("gated_cross_attn_layers.") for n in trainable)
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        with torch.no_grad():
            logits = model(**batch).logits
        assert torch.equal(logits, torch.load({str(tmp_path / "logits.pt")!r})), "logits differ"
        again = processor(text=["a red bar"])
        assert torch.equal(again["input_ids"], batch["input_ids"])
        print("OK", type(model).__module__)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK transformers_modules." in result.stdout
