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


@pytest.mark.slow
@pytest.mark.parametrize("pythonpath", [None, "repo"])
def test_shortened_demo_runs_with_pythonpath_unset_and_set_to_the_checkout(tmp_path, pythonpath):
    """Issue 8 point 9: `PYTHONPATH=<repo> python train/demo.py` died with "'train' is not a package" (train/train.py
    shadowed the `train` package). The whole chain, shortened (few steps and clips, no gates), from a foreign
    working directory, both ways."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath == "repo":
        env["PYTHONPATH"] = repo
    out = tmp_path / "demo_out"
    argv = [sys.executable, os.path.join(repo, "train", "demo.py"), "--output_dir", str(out), "--no-gate",
            "--no-control", "--pretrain_steps", "4", "--finetune_steps", "4", "--laion_images", "64",
            "--msrvtt_train_videos", "16", "--msrvtt_test_videos", "8", "--sample_videos", "1",
            "--timesformer_steps", "5", "--opt_steps", "5"]  # fmt: skip
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert os.path.isdir(out.joinpath(summary["artifacts"]["final_model"]))
