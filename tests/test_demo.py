"""The embedded default run (README's main command) end to end: slow (~4-5 minutes on 2 CPU cores)."""

import json

import pytest


@pytest.mark.slow
def test_demo_trains_a_captioner_clearly_better_than_untrained(tmp_path):
    from train.demo import main

    assert main(["--output_dir", str(tmp_path / "demo_out")]) == 0
    summary = json.loads((tmp_path / "demo_out" / "demo_summary.json").read_text())
    assert summary["cider_d_after"] > summary["cider_d_before"] + 20
    for key in ("final_model", "pseudolabels", "eval_after", "captions"):
        assert (tmp_path / "demo_out").joinpath(summary["artifacts"][key]).exists()
    from transformers import AutoModel

    AutoModel.from_pretrained(summary["artifacts"]["final_model"], trust_remote_code=True)
