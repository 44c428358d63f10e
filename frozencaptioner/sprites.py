"""A second synthetic video world, for pre-training the tiny TimeSformer (`frozencaptioner.pretrained_tiny`).

It is deliberately NOT the demo's world (`train/shapes.render_clip`: one disk of four fixed colours on a dark noisy
background): here a square, triangle, ring, cross or diamond of any hue and of several sizes moves left, right, up or
down, or stands still, at one of many speeds over one of four backgrounds (flat, gradient, stripes, checkerboard).
Like the demo's world it moves on a torus from a uniformly random start, so no single frame tells the direction and a
clip played backwards is a clip of the opposite direction. Clips are rendered as tensors at twice the resolution,
then box-filtered down (anti-aliasing), and come out already normalised like TimeSformer's video processor.
"""

import math

import torch
import torch.nn.functional as F


DIRECTIONS = ("left", "right", "up", "down", "still")
DIRECTION_VECTORS = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0), (0.0, 0.0))
REVERSED_DIRECTION = (1, 0, 3, 2, 4)  # the class of a clip played backwards
SHAPES = ("square", "triangle", "ring", "cross", "diamond")
HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")  # the colour class is the nearest of six hues
BACKGROUNDS = ("flat", "gradient", "stripes", "checkerboard")
SPRITE_SPEED = (1.0, 4.5)  # pixels per frame at the output size


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """hue, sat, val [B] in [0, 1] -> rgb [B, 3] in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6  # (B, 3)
    return val[:, None] - val[:, None] * sat[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _shape_masks(dx: torch.Tensor, dy: torch.Tensor, radius: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Offsets from the shape's centre dx, dy [B, T, S, S], radius [B] and shape ids [B] -> coverage [B, T, S, S]."""
    r = radius[:, None, None, None]
    ax, ay, d2 = dx.abs(), dy.abs(), dx**2 + dy**2
    masks = torch.stack(
        [
            torch.maximum(ax, ay) <= 0.8 * r,  # square
            (dy <= 0.7 * r) & (dy >= -0.9 * r) & (ax <= 0.6 * (dy + 0.9 * r)),  # triangle
            (d2 <= r**2) & (d2 >= (0.5 * r) ** 2),  # ring
            ((ax <= r / 3) & (ay <= r)) | ((ay <= r / 3) & (ax <= r)),  # cross
            ax + ay <= r,  # diamond
        ],
        dim=1,
    )  # (B, n_shapes, T, S, S)
    return masks[torch.arange(len(shape)), shape].float()


def render_sprite_clips(
    batch_size: int,
    generator: torch.Generator,
    num_frames: int = 4,
    size: int = 16,
    speed: tuple[float, float] = SPRITE_SPEED,
    radius: tuple[float, float] = (1.5, 4.0),
    noise: float = 0.04,
    backgrounds: tuple[str, ...] = BACKGROUNDS,
    directions: tuple[str, ...] = DIRECTIONS,
    supersample: int = 2,
    mean: float = 0.45,
    std: float = 0.225,
) -> dict:
    """A batch of sprite clips and their labels.

    Args:
        batch_size (`int`): clips to render.
        generator (`torch.Generator`): the only source of randomness (same seed, same clips).
        num_frames (`int`): frames per clip.
        size (`int`): output frame size in pixels.
        speed (`tuple[float, float]`): pixels per frame (at `size`), drawn uniformly.
        radius (`tuple[float, float]`): shape radius in pixels (at `size`), drawn uniformly.
        noise (`float`): std of the per-pixel Gaussian noise (on the [0, 1] scale).
        backgrounds (`tuple[str, ...]`): the kinds of background drawn from (`BACKGROUNDS`).
        directions (`tuple[str, ...]`): the directions drawn from (`DIRECTIONS`).
        supersample (`int`): render at `size * supersample`, then average-pool.
        mean, std (`float`): normalisation, as in the tiny processor (`frozencaptioner.tiny.tiny_processor`).

    Returns:
        `dict` with `pixel_values` (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, size, size)`),
        and `direction`, `hue`, `shape`, `background` (`torch.LongTensor` of shape `(batch_size,)`, indices into
        `DIRECTIONS`, `HUES`, `SHAPES`, `BACKGROUNDS`).
    """
    b, ss = batch_size, supersample
    canvas = size * ss

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (b,)), generator=generator)

    allowed = torch.tensor([DIRECTIONS.index(d) for d in directions])
    direction = allowed[torch.randint(0, len(allowed), (b,), generator=generator)]
    shape = torch.randint(0, len(SHAPES), (b,), generator=generator)
    kinds = torch.tensor([BACKGROUNDS.index(kind) for kind in backgrounds])
    background = kinds[torch.randint(0, len(kinds), (b,), generator=generator)]
    hue = torch.rand(b, generator=generator)
    rgb = _hsv_to_rgb(hue, uniform(0.6, 1.0), uniform(0.75, 1.0))  # (B, 3)

    velocity = torch.tensor(DIRECTION_VECTORS)[direction] * uniform(*speed)[:, None] * ss  # (B, 2)
    start = uniform(0, canvas, b, 2)
    t = torch.arange(num_frames, dtype=torch.float32)
    centre = start[:, None, :] + velocity[:, None, :] * t[None, :, None]  # (B, T, 2)
    yy, xx = torch.meshgrid(torch.arange(canvas) + 0.5, torch.arange(canvas) + 0.5, indexing="ij")
    # offsets on the torus, in [-canvas/2, canvas/2)
    dx = (xx - centre[..., 0, None, None] + canvas / 2) % canvas - canvas / 2  # (B, T, S, S)
    dy = (yy - centre[..., 1, None, None] + canvas / 2) % canvas - canvas / 2
    mask = _shape_masks(dx, dy, uniform(*radius) * ss, shape)[:, :, None]  # (B, T, 1, S, S)

    period = torch.randint(4, 12, (b,), generator=generator).float()[:, None, None] * ss
    angle = uniform(0, 2 * math.pi)[:, None, None]
    along = xx * angle.cos() + yy * angle.sin()  # (B, S, S): a random orientation for gradients and stripes
    patterns = torch.stack(
        [
            torch.zeros(b, canvas, canvas),
            (along / (canvas * math.sqrt(2)) + 0.5).clamp(0, 1),
            ((along // (period / 2)) % 2).float(),
            (((xx // period) + (yy // period)) % 2).float().expand(b, canvas, canvas),
        ],
        dim=1,
    )[torch.arange(b), background]  # (B, S, S)
    low, high = uniform(0.05, 0.4, b, 3), uniform(0.05, 0.4, b, 3)
    bg = low[:, :, None, None] * (1 - patterns[:, None]) + high[:, :, None, None] * patterns[:, None]  # (B, 3, S, S)
    frames = bg[:, None] * (1 - mask) + rgb[:, None, :, None, None] * mask  # (B, T, 3, S, S)
    frames = F.avg_pool2d(frames.flatten(0, 1), ss).view(b, num_frames, 3, size, size)
    frames = (frames + noise * torch.randn(frames.shape, generator=generator)).clamp(0, 1)
    return {
        "pixel_values": (frames - mean) / std,
        "direction": direction,
        "hue": (hue * len(HUES) + 0.5).floor().long() % len(HUES),
        "shape": shape,
        "background": background,
    }
