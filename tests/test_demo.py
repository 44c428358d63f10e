"""The embedded default run (README's main command) end to end: slow (~5-6 minutes on 2 CPU cores)."""

import json

import pytest


@pytest.mark.slow
def test_demo_trains_a_captioner_that_reads_motion(tmp_path):
    from train.demo import main

    assert main(["--output_dir", str(tmp_path / "demo_out")]) == 0
    summary = json.loads((tmp_path / "demo_out" / "demo_summary.json").read_text())
    assert summary["cider_d_after"] > summary["cider_d_before"] + 20
    # issue 12: the direction word comes from the frames, not from a guess or a single frame
    motion = summary["motion"]
    assert motion["num_clips"] == summary["num_test_videos"] >= 40
    assert motion["motion_accuracy_all_frames"] >= 0.9
    assert motion["motion_accuracy_all_frames"] - motion["motion_accuracy_one_frame"] >= 0.4
    assert motion["direction_flip_fraction"] >= 0.8
    assert motion["one_frame_index"] == 2  # sample_frame_indices(4, 1): the centre of the stored frames
    assert "motion_accuracy_control_trained_one_frame" in motion
    # the towers were pre-trained (and saved) before any adapter was trained
    assert summary["tower_pretraining"]["timesformer"]["direction_accuracy"] > 0.5
    assert summary["tower_pretraining"]["opt"]["final_loss"] < 2.0
    for key in ("final_model", "pseudolabels", "eval_after", "captions", "pretrained_timesformer", "pretrained_opt"):
        assert (tmp_path / "demo_out").joinpath(summary["artifacts"][key]).exists()
    from transformers import AutoModel

    AutoModel.from_pretrained(summary["artifacts"]["final_model"], trust_remote_code=True)
