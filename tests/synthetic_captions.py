"""Tiny learnable captioning task shared by tests: coloured bars sliding left or right."""

import numpy as np
import torch


COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 230), "yellow": (230, 230, 30)}
EXAMPLES = [("red", "left"), ("blue", "right"), ("green", "left"), ("yellow", "right")]


def bar_clip(colour: str, direction: str, frames: int = 8, size: int = 24) -> np.ndarray:
    """(frames, size, size, 3) uint8: a coloured bar sliding left or right on black."""
    clip = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        x = int(t * (size - 6) / (frames - 1))
        x = x if direction == "right" else size - 6 - x
        clip[t, :, x : x + 6] = COLOURS[colour]
    return clip


def caption(colour: str, direction: str) -> str:
    return f"a {colour} bar moving {direction}"


def train_adapters(model, processor, examples=EXAMPLES, steps: int = 150, lr: float = 3e-3):
    """Full-batch AdamW on the trainable (adapter) parameters; returns (batch, first loss, last loss)."""
    batch = processor(videos=[bar_clip(c, d) for c, d in examples], text=[caption(c, d) for c, d in examples])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return batch, losses[0], losses[-1]
