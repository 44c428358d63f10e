"""Tiny towers that stand in for pre-trained ones: the recipe shared by the demo, the motion tests and benchmarks.

The paper freezes a TimeSformer pre-trained on video (its features carry motion) and an OPT pre-trained on text.
A random-init tiny TimeSformer cannot stand in for the first: HF initialises `time_embeddings` to zeros, so a frozen
random tower is exactly equivariant to frame order and the captioner on top is blind to time. So, before any
adapter is trained:

1. `pretrain_tiny_timesformer` trains a tiny `TimesformerModel` as a video classifier on clips from a renderer of
   its own (`frozencaptioner.sprites`: other shapes, sizes, speeds, hues and backgrounds than the demo's balls).
   Its classes are the direction of motion (left / right / up / down / still) and the hue; the heads read the
   max-pool of the patch tokens, the tokens the adapters attend to (the CLS token is never used). Every batch also
   holds each clip played backwards, labelled with the opposite direction (a valid clip of the sprite world), and
   the time embeddings start as a linear ramp over the frames instead of zeros: both only speed up learning which
   way time runs. The speeds follow a curriculum (`curriculum_speed`): slow sprites first, the whole range from
   half-way on; trained on the whole range from the start, the tower read fast motion (a patch per frame) worse
   and the demo's fast vertical clips were captioned horizontal. Only the tower is saved (`save_pretrained`, with
   its video processor); the heads are dropped.
2. `pretrain_tiny_opt` trains a tiny `OPTForCausalLM` (OPT's default init_std 0.02) as a language model on caption
   text (`caption_corpus`) that contains none of the held-out references, and saves it with its tokenizer.
3. `build_pretrained_tiny_frozencaptioner` loads both with `from_pretrained` through
   `FrozenCaptionerForConditionalGeneration.from_pretrained_backbones` (frozen, as in the paper), adds fresh
   adapters and saves the captioner in the Hub format.

Cost at the default steps, one thread each (the demo runs both at once, one core each), on 2 otherwise idle cores:
the TimeSformer 18-22 s (500 steps of 32 clips, ~30 ms of model and ~4 ms of rendering a step), the OPT 9-14 s;
both grow by up to ~1.7x when other jobs share the cores. Each report (`pretraining_report.json`) gives the wall and
the CPU seconds.
"""

import argparse
import itertools
import json
import os
import resource
import time
from collections.abc import Iterable

import torch
from torch import nn
from transformers import OPTConfig, OPTForCausalLM, TimesformerConfig, TimesformerModel

from frozencaptioner.sprites import DIRECTIONS, HUES, REVERSED_DIRECTION, SHAPES, SPRITE_SPEED, render_sprite_clips
from frozencaptioner.tiny import DEFAULT_WORDS, tiny_processor, tiny_tokenizer


# The tower's classes: the four directions of motion (a "still" class made the escape from the loss plateau where
# the tower knows the axis but not the sign of the motion slower and less reliable across seeds) and six hues.
PRETRAINING_DIRECTIONS = ("left", "right", "up", "down")


# ----------------------------------------------------------------------------------------------- caption text
CORPUS_COLOURS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "pink", "grey")
CORPUS_SHAPES = tuple(s for s in SHAPES) + ("box", "star", "bar")
CORPUS_DIRECTIONS = ("left", "right", "up", "down")
_VIDEO_TEMPLATES = (
    "a {c} {s} moving {d}",
    "a {c} {s} is moving {d}",
    "the {c} {s} is moving {d}",
    "a video of a {c} {s} moving {d}",
    "the {c} {s} moving {d}",
    "a {z} {c} {s} moving {d}",
    "a {c} {s} slides {d}",
    "the {z} {c} {s} goes {d}",
    "a {c} {s} is standing still",
    "the {c} {s} does not move",
)
_IMAGE_TEMPLATES = ("a {c} {s}", "the {c} {s}", "a {c} {s} in the image", "an image of a {c} {s}", "a {z} {c} {s}")
_SCENES = (
    "{who} is {doing} in the {where}",
    "{who} {doing} in the {where}",
    "a video of {who} {doing} in the {where}",
    "{who} is {doing} on the {on}",
    "{who} are {doing} on the {on}",
)
_WHO = ("a man", "a woman", "a person", "people", "a dog", "a cat", "the man", "the woman")
_DOING = ("walking", "running", "playing", "cooking", "talking", "riding a bike", "playing with a ball")
_WHERE = ("room", "kitchen", "city", "field")
_ON = ("road", "street", "grass", "table")
CORPUS_WORDS = sorted(
    {
        w
        for text in _VIDEO_TEMPLATES + _IMAGE_TEMPLATES + _SCENES + _WHO + _DOING + _WHERE + _ON
        for w in text.replace("{", " ").replace("}", " ").split()
        if w not in ("c", "s", "d", "z", "who", "doing", "where", "on")
    }
    | set(CORPUS_COLOURS)
    | set(CORPUS_SHAPES)
    | set(CORPUS_DIRECTIONS)
    | {"small", "big", "ball", "on"}
)


def caption_corpus(exclude: Iterable[str] = (), ball_images: Iterable[str] = ()) -> list[str]:
    """Caption-style sentences for the tiny LM: videos of sprites (`CORPUS_SHAPES`, which has no ball) moving or
    standing still, images of sprites, everyday scenes, plus `ball_images` (image captions, e.g. the demo's LAION
    templates with their colours). Any sentence in `exclude` (the held-out references) is dropped; the result is
    sorted and free of duplicates."""
    sentences = set(ball_images)
    for c, s, z in itertools.product(CORPUS_COLOURS, CORPUS_SHAPES, ("small", "big")):
        for template in _IMAGE_TEMPLATES:
            sentences.add(template.format(c=c, s=s, z=z))
        for d, template in itertools.product(CORPUS_DIRECTIONS, _VIDEO_TEMPLATES):
            sentences.add(template.format(c=c, s=s, z=z, d=d))
    for template in _SCENES:
        for who, doing, where, on in itertools.product(_WHO, _DOING, _WHERE, _ON):
            sentences.add(template.format(who=who, doing=doing, where=where, on=on))
    excluded = {" ".join(e.lower().split()) for e in exclude}
    return sorted(s for s in sentences if " ".join(s.lower().split()) not in excluded)


def vocabulary(*extra: Iterable[str]) -> list[str]:
    """Words of the tiny tokenizer: `DEFAULT_WORDS`, the corpus words and any `extra` word lists."""
    words = set(DEFAULT_WORDS) | set(CORPUS_WORDS)
    for more in extra:
        words |= set(more)
    return sorted(words)


# ----------------------------------------------------------------------------------------------- the video tower
def tiny_timesformer_config(num_frames: int = 4, image_size: int = 16) -> TimesformerConfig:
    """The tower of `frozencaptioner.tiny.tiny_config` (patch 4, width 32, 2 layers, 4 heads, FFN 37)."""
    return TimesformerConfig(
        image_size=image_size, patch_size=4, num_frames=num_frames, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _VideoClassifierHeads(nn.Module):
    """Linear heads on the max-pool of the patch tokens: the direction of motion and the hue."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.direction = nn.Linear(hidden_size, len(DIRECTIONS))
        self.hue = nn.Linear(hidden_size, len(HUES))

    def forward(self, last_hidden_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = last_hidden_state[:, 1:].amax(dim=1)  # (B, 1 + s*t, D) -> (B, D); CLS dropped, as the adapters do
        return self.direction(pooled), self.hue(pooled)


@torch.no_grad()
def direction_hits(tower, heads, clips: dict) -> torch.Tensor:
    """Whether the tower + heads name each clip's direction of motion: bool [B] for `render_sprite_clips` output."""
    direction, _ = heads(tower(clips["pixel_values"]).last_hidden_state)
    return direction.argmax(-1) == clips["direction"]


@torch.no_grad()
def video_classifier_accuracy(tower, heads, num_clips: int = 512, seed: int = 10_000, num_frames: int = 4) -> dict:
    """Direction / hue accuracy on fresh sprite clips, on the same clips reversed (direction flipped), and direction
    accuracy on clips of the fastest quarter of `SPRITE_SPEED` (the demo's fast clips move about that much)."""
    tower.eval()
    generator = torch.Generator().manual_seed(seed)
    clips = render_sprite_clips(num_clips, generator, num_frames=num_frames, directions=PRETRAINING_DIRECTIONS)
    direction, hue = heads(tower(clips["pixel_values"]).last_hidden_state)
    reversed_clips = {
        "pixel_values": clips["pixel_values"].flip(1),
        "direction": torch.tensor(REVERSED_DIRECTION)[clips["direction"]],
    }
    slowest, fastest = SPRITE_SPEED
    fast = render_sprite_clips(
        num_clips, generator, num_frames=num_frames, directions=PRETRAINING_DIRECTIONS,
        speed=(fastest - (fastest - slowest) / 4, fastest),
    )  # fmt: skip
    return {
        "direction_accuracy": (direction.argmax(-1) == clips["direction"]).float().mean().item(),
        "direction_accuracy_reversed": direction_hits(tower, heads, reversed_clips).float().mean().item(),
        "direction_accuracy_fastest_quarter": direction_hits(tower, heads, fast).float().mean().item(),
        "hue_accuracy": (hue.argmax(-1) == clips["hue"]).float().mean().item(),
    }


def curriculum_speed(
    step: int, steps: int, speed: tuple[float, float] = SPRITE_SPEED, fraction: float = 0.5, start: float = 0.3
) -> tuple[float, float]:
    """The sprite speed range at `step` of `steps`: slow clips first. The top speed rises linearly from `start` of
    the way between `speed`'s ends to its fast end over the first `fraction` of the steps, then stays there
    (`fraction=0`: the whole range from the first step). Without it the tower learns fast motion late or not at all
    (a fast sprite jumps a whole patch per frame, and divided space-time attention has to match it across patches)."""
    slowest, fastest = speed
    ramp = min(1.0, step / (fraction * steps)) if fraction > 0 else 1.0
    return slowest, slowest + (fastest - slowest) * (start + (1.0 - start) * ramp)


def train_timesformer_classifier(
    steps: int = 500,
    batch_size: int = 16,
    learning_rate: float = 6e-3,
    seed: int = 0,
    num_frames: int = 4,
    image_size: int = 16,
    time_ramp: float = 1.0,
    reverse_pairs: bool = True,
    speed_curriculum: float = 0.5,
    log=None,
    **render_kwargs,
) -> tuple[TimesformerModel, nn.Module]:
    """The pre-training loop of `pretrain_tiny_timesformer`: returns the tower and its classifier heads (eval mode).
    `render_kwargs` go to `render_sprite_clips` (e.g. `speed=`, `backgrounds=`)."""
    torch.manual_seed(seed)
    config = tiny_timesformer_config(num_frames, image_size)
    tower = TimesformerModel(config)
    with torch.no_grad():  # a ramp over the frames along one random direction (HF's init is zeros: no time at all)
        ramp = torch.linspace(-1.0, 1.0, num_frames)[:, None]  # (T, 1)
        axis = torch.randn(config.hidden_size)
        tower.embeddings.time_embeddings.copy_((time_ramp * ramp * axis / axis.norm() * config.hidden_size**0.5)[None])
    heads = _VideoClassifierHeads(config.hidden_size)
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    reverse = torch.tensor(REVERSED_DIRECTION)
    tower.train()
    heads.train()
    speed = render_kwargs.pop("speed", SPRITE_SPEED)
    for step in range(steps):
        clips = render_sprite_clips(
            batch_size,
            generator,
            num_frames=num_frames,
            size=image_size,
            speed=curriculum_speed(step, steps, speed, speed_curriculum),
            **{"directions": PRETRAINING_DIRECTIONS, **render_kwargs},
        )
        pixels, direction_labels, hue_labels = clips["pixel_values"], clips["direction"], clips["hue"]
        if reverse_pairs:
            pixels = torch.cat([pixels, pixels.flip(1)])  # (2B, T, 3, H, W)
            direction_labels = torch.cat([direction_labels, reverse[direction_labels]])
            hue_labels = hue_labels.repeat(2)
        direction, hue = heads(tower(pixels).last_hidden_state)
        loss = nn.functional.cross_entropy(direction, direction_labels) + nn.functional.cross_entropy(hue, hue_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"timesformer step {step}: loss {loss.item():.3f}")
    return tower.eval(), heads.eval()


def pretrain_tiny_timesformer(save_dir: str | os.PathLike, seed: int = 0, num_frames: int = 4, **kwargs) -> dict:
    """Pre-train the tiny TimeSformer on the sprite classification task (`train_timesformer_classifier`, whose
    keyword arguments `kwargs` are) and `save_pretrained` the tower (with a `VideoMAEVideoProcessor`) into
    `save_dir`. Returns a report: steps, seconds (wall and CPU), accuracy on fresh sprite clips (never the demo's)."""
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    tower, heads = train_timesformer_classifier(seed=seed, num_frames=num_frames, **kwargs)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    report = {"steps": kwargs.get("steps", 500), "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1)}
    report.update({k: round(v, 3) for k, v in video_classifier_accuracy(tower, heads, num_frames=num_frames).items()})
    image_size = tower.config.image_size
    tower.save_pretrained(save_dir)
    tiny_processor(num_frames=num_frames, image_size=image_size).video_processor.save_pretrained(save_dir)
    with open(os.path.join(save_dir, "pretraining_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


# ----------------------------------------------------------------------------------------------- the language model
def tiny_opt_config(vocab_size: int) -> OPTConfig:
    """The LM of `frozencaptioner.tiny.tiny_config` with OPT's own init (init_std 0.02): pre-training, not a large
    init, gives it confident next-word distributions."""
    return OPTConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, ffn_dim=64,
        max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
        pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )  # fmt: skip


def pretrain_tiny_opt(
    save_dir: str | os.PathLike,
    corpus: list[str],
    words: Iterable[str],
    steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    log=None,
) -> dict:
    """Pre-train a tiny `OPTForCausalLM` on `corpus` (`BOS caption EOS`, as the captioner's labels) and save it and
    its word-level tokenizer into `save_dir`. Returns a report (steps, seconds, final loss)."""
    if not corpus:
        raise ValueError("the caption corpus is empty")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    tokenizer = tiny_tokenizer(words)
    processor = tiny_processor(tokenizer)
    unknown = sorted(
        {w for s in corpus for w in s.split() if tokenizer.convert_tokens_to_ids(w) == tokenizer.unk_token_id}
    )
    if unknown:
        raise ValueError(f"corpus words missing from the tokenizer: {unknown[:20]}")
    torch.manual_seed(seed)
    model = OPTForCausalLM(tiny_opt_config(len(tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        pick = torch.randint(0, len(corpus), (batch_size,), generator=generator).tolist()
        batch = processor.tokenize_captions([corpus[i] for i in pick])
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"opt step {step}: loss {loss.item():.3f}")
    model.eval()
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    report = {
        "steps": steps,
        "batch_size": batch_size,
        "corpus_sentences": len(corpus),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 3),
    }
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    with open(os.path.join(save_dir, "pretraining_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


# ----------------------------------------------------------------------------------------------- the captioner
ADAPTER_CONFIG = dict(adapter_layers=[2, 3], adapter_hidden_size=32, adapter_num_heads=4, adapter_ffn_multiplier=2)


def load_pretrained_tiny_frozencaptioner(vision_dir: str, text_dir: str, save_dir=None, num_frames=None, **overrides):
    """The paper's step 0 on the tiny towers: `from_pretrained_backbones` (both towers loaded with
    `from_pretrained`, then frozen) + fresh adapters (`ADAPTER_CONFIG`, then `overrides`, e.g.
    `cross_attention="full"`). Saved in the Hub format when `save_dir` is given. Returns `(model, processor)`."""
    from transformers import AutoTokenizer, AutoVideoProcessor

    from modeling_frozencaptioner import FrozenCaptionerForConditionalGeneration, FrozenCaptionerProcessor

    seed = overrides.pop("seed", 0)
    torch.manual_seed(seed)  # the adapters' init
    model = FrozenCaptionerForConditionalGeneration.from_pretrained_backbones(
        vision_dir, text_dir, **{**ADAPTER_CONFIG, **overrides}
    )
    processor = FrozenCaptionerProcessor(
        video_processor=AutoVideoProcessor.from_pretrained(vision_dir),
        tokenizer=AutoTokenizer.from_pretrained(text_dir),
        num_frames=num_frames or model.config.vision_config.num_frames,
        max_length=32,
    )
    if save_dir is not None:  # plain save_pretrained writes the Hub remote-code folder (auto_map + .py files)
        model.save_pretrained(save_dir)
        processor.save_pretrained(save_dir)
    return model, processor


def build_pretrained_tiny_frozencaptioner(
    work_dir: str | os.PathLike,
    exclude: Iterable[str] = (),
    include: Iterable[str] = (),
    seed: int = 0,
    vision_steps: int = 500,
    text_steps: int = 300,
    save_dir=None,
    log=None,
    **overrides,
):
    """Both pre-trainings (towers saved under `work_dir/timesformer`, `work_dir/opt`), then
    `load_pretrained_tiny_frozencaptioner`. `exclude`: held-out references (never in the LM's text, but their words
    are in the vocabulary); `include`: more caption text (e.g. image captions of the training set).
    Returns `(model, processor, report)`."""
    exclude, include = list(exclude), list(include)
    vision_dir, text_dir = os.path.join(work_dir, "timesformer"), os.path.join(work_dir, "opt")
    report = {"timesformer": pretrain_tiny_timesformer(vision_dir, steps=vision_steps, seed=seed, log=log)}
    corpus = caption_corpus(exclude=exclude, ball_images=include)
    words = vocabulary(*(s.lower().split() for s in exclude + include))
    report["opt"] = pretrain_tiny_opt(text_dir, corpus, words, steps=text_steps, seed=seed, log=log)
    model, processor = load_pretrained_tiny_frozencaptioner(vision_dir, text_dir, save_dir, seed=seed, **overrides)
    return model, processor, report


# ----------------------------------------------------------------------------------------------- command line
def _read_lines(paths) -> list[str]:
    lines = []
    for path in paths or []:
        with open(path, encoding="utf-8") as f:
            lines += [line.strip() for line in f if line.strip()]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vision", help="pre-train the tiny TimeSformer on sprite clips")
    v.add_argument("--output_dir", required=True)
    v.add_argument("--steps", type=int, default=None, help="default: pretrain_tiny_timesformer's")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--num_frames", type=int, default=4)
    t = sub.add_parser("text", help="pre-train the tiny OPT on caption text")
    t.add_argument("--output_dir", required=True)
    t.add_argument("--steps", type=int, default=None, help="default: pretrain_tiny_opt's")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--exclude", nargs="*", help="text files, one held-out reference per line: never in the LM text")
    t.add_argument("--include", nargs="*", help="text files, one caption per line, added to the LM text")
    c = sub.add_parser("captioner", help="tiny pre-trained towers -> a frozen FrozenCaptioner with fresh adapters")
    c.add_argument("--vision", required=True)
    c.add_argument("--text", required=True)
    c.add_argument("--output_dir", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--cross_attention", choices=["separable", "full"], default="separable")
    args = p.parse_args(argv)
    if args.command == "vision":
        steps = {"steps": args.steps} if args.steps else {}
        report = pretrain_tiny_timesformer(args.output_dir, seed=args.seed, num_frames=args.num_frames, **steps)
    elif args.command == "text":
        exclude, include = _read_lines(args.exclude), _read_lines(args.include)
        corpus = caption_corpus(exclude=exclude, ball_images=include)
        words = vocabulary(*(s.lower().split() for s in exclude + include))
        steps = {"steps": args.steps} if args.steps else {}
        report = pretrain_tiny_opt(args.output_dir, corpus, words, seed=args.seed, **steps)
        report["excluded_references"] = len(set(exclude))
    else:
        load_pretrained_tiny_frozencaptioner(
            args.vision, args.text, args.output_dir, seed=args.seed, cross_attention=args.cross_attention
        )
        report = {"output_dir": args.output_dir}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
