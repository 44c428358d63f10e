"""A learnable synthetic world for the demo, the tests and the benchmark.

Every image shows one coloured ball on a dark, noisy background; every video shows a ball moving left, right, up or
down from a random start at a random speed, so that no single frame tells the direction (`render_clip`). The caption is fully determined by the pixels ("a red ball moving left"), from a 20-word vocabulary, so a tiny
FrozenCaptioner trained for a few minutes on CPU can learn it, and CIDEr-D before vs after training is a meaningful
check. (A tiny random pseudolabeling teacher only yields noise captions; the pseudolabel step of the demo still runs
for real, but the learnable signal comes from here.)
"""

from fractions import Fraction

import numpy as np

from train.data import encode_jpeg


COLOURS = {"red": (230, 40, 40), "blue": (40, 80, 235), "green": (40, 200, 60), "yellow": (235, 220, 40)}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
IMAGE_TEMPLATES = ["a {c} ball", "the {c} ball", "a {c} ball in the image", "an image of a {c} ball"]
VIDEO_TEMPLATES = [
    "a {c} ball moving {d}",
    "a {c} ball is moving {d}",
    "the {c} ball is moving {d}",
    "a video of a {c} ball moving {d}",
    "the {c} ball moving {d}",
]
VOCABULARY = sorted(
    {w for t in IMAGE_TEMPLATES + VIDEO_TEMPLATES for w in t.replace("{c}", "").replace("{d}", "").split()}
    | set(COLOURS)
    | set(DIRECTIONS)
)


def render_clip(
    colour: str,
    direction: str | None,
    num_frames: int,
    size: int,
    rng: np.random.Generator,
    travel: tuple[float, float] = (0.5, 1.0),
) -> np.ndarray:
    """(num_frames, size, size, 3) uint8. `direction=None` gives a still ball (an image when num_frames=1).

    The ball moves on a torus (leaving one edge it re-enters at the opposite one) from a uniformly random start, at a
    random speed: over the clip it travels `travel` x `size` pixels (drawn uniformly). So in every single frame the
    ball's position is uniform over the frame whatever the direction: no one frame shows which way it moves, and a
    clip played backwards is a clip of the opposite direction drawn from the same distribution.
    """
    radius = max(2, size // 8)
    dx, dy = DIRECTIONS[direction] if direction else (0, 0)
    start = rng.uniform(0, size, size=2)
    distance = rng.uniform(*travel) * size
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    base = rng.integers(0, 40, size=(size, size, 1))
    for t in range(num_frames):
        frac = t / max(1, num_frames - 1)
        cx, cy = start[0] + dx * distance * frac, start[1] + dy * distance * frac
        # offsets on the torus, in [-size/2, size/2)
        ox, oy = (xx - cx + size / 2) % size - size / 2, (yy - cy + size / 2) % size - size / 2
        frame = np.repeat(base, 3, axis=2) + rng.integers(0, 12, size=(size, size, 3))
        frame[ox**2 + oy**2 <= radius**2] = COLOURS[colour]
        frames[t] = np.clip(frame, 0, 255)
    return frames


def _pick(rng, options):
    return options[int(rng.integers(0, len(options)))]


def training_rows(
    n: int, modality: str, seed: int = 0, num_frames: int = 4, size: int = 32, source: str | None = None
):
    """Rows in the training schema `{id, frames (JPEG), caption, source}`; images get T=1."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        colour = _pick(rng, list(COLOURS))
        if modality == "image":
            frames, caption = render_clip(colour, None, 1, size, rng), _pick(rng, IMAGE_TEMPLATES).format(c=colour)
        else:
            direction = _pick(rng, list(DIRECTIONS))
            frames = render_clip(colour, direction, num_frames, size, rng)
            caption = _pick(rng, VIDEO_TEMPLATES).format(c=colour, d=direction)
        rows.append({
            "id": f"{modality}-{seed}-{i:06d}",
            "frames": [encode_jpeg(f) for f in frames],
            "caption": caption,
            "source": source or ("synthetic-laion" if modality == "image" else "synthetic-video"),
        })  # fmt: skip
    return rows


def sampled_clip(
    colour: str, direction: str, rng: np.random.Generator, num_frames: int = 4, size: int = 32, source_frames: int = 16
) -> np.ndarray:
    """A clip as the demo's benchmark stores it: a `source_frames`-frame video (`write_video`'s 2 s at 8 fps) of which
    `num_frames` are kept, those `sample_frame_indices(source_frames, num_frames)` picks (uniform by time, as
    `build_msrvtt` samples). So the ball moves `travel` x `size` over the whole video, less between kept frames
    than in `render_clip(..., num_frames, ...)`. Returns (num_frames, size, size, 3) uint8."""
    from modeling_frozencaptioner import sample_frame_indices

    return render_clip(colour, direction, source_frames, size, rng)[sample_frame_indices(source_frames, num_frames)]


def eval_rows(n: int, seed: int = 0, num_frames: int = 4, size: int = 32, source_frames: int | None = None):
    """MSR-VTT-style rows `{id, frames, references}`: every video has all video templates as references.
    `source_frames`: render that many frames and keep `num_frames` of them, as the demo does (`sampled_clip`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        colour, direction = _pick(rng, list(COLOURS)), _pick(rng, list(DIRECTIONS))
        if source_frames:
            frames = sampled_clip(colour, direction, rng, num_frames, size, source_frames)
        else:
            frames = render_clip(colour, direction, num_frames, size, rng)
        references = [t.format(c=colour, d=direction) for t in VIDEO_TEMPLATES]
        rows.append(
            {"id": f"video{seed}-{i:05d}", "frames": [encode_jpeg(f) for f in frames], "references": references}
        )
    return rows


def write_video(path, colour: str, direction: str, seconds: float = 4.0, fps: int = 8, size: int = 64, seed: int = 0):
    """An H.264 mp4 of a moving ball (for pseudolabeling and `frozencaptioner caption`). Returns the path."""
    import av

    rng = np.random.default_rng(seed)
    num = int(round(seconds * fps))
    frames = render_clip(colour, direction, num, size, rng)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)
