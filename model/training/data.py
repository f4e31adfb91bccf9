"""Procedural training clips: coloured shapes moving on plain backgrounds, with varied captions.

Every clip is drawn from a seed alone (numpy's PCG64 and Pillow), so the same seed gives the same
pixels and caption on any machine. A fixed set of colour-shape-motion triples (`HELD_OUT`) never
appears in training clips, so evaluation can ask for combinations the model has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

# Colours far apart in RGB, so a blurred or slightly off generation still reads as one of them.
COLOURS: dict[str, RGB] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 20),
    "yellow": (245, 225, 30),
    "green": (30, 170, 50),
    "cyan": (30, 210, 220),
    "blue": (35, 70, 235),
    "purple": (150, 50, 200),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, RGB] = {
    "black": (12, 12, 12),
    "gray": (120, 120, 120),
    "white": (245, 245, 245),
    "navy": (20, 28, 80),
}
# Shape colours too close to a background to be told apart on it.
CLASHES: frozenset[tuple[str, str]] = frozenset({("white", "white"), ("blue", "navy"), ("purple", "navy")})
SHAPES = ("circle", "square", "triangle", "star")
MOVES = ("left", "right", "up", "down")
MOTIONS = (*MOVES, "growing", "shrinking", "still")

# Never drawn in training clips: each colour twice, each shape four times, each motion two or three times.
HELD_OUT: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("red", "star", "up"),
        ("red", "square", "shrinking"),
        ("orange", "circle", "left"),
        ("orange", "triangle", "growing"),
        ("yellow", "square", "down"),
        ("yellow", "star", "still"),
        ("green", "triangle", "right"),
        ("green", "circle", "shrinking"),
        ("cyan", "star", "left"),
        ("cyan", "square", "growing"),
        ("blue", "circle", "up"),
        ("blue", "triangle", "still"),
        ("purple", "square", "right"),
        ("purple", "star", "down"),
        ("white", "triangle", "up"),
        ("white", "circle", "right"),
    }
)

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
}
# Phrases after "moving"/"slides"-style verbs; growing/shrinking/still carry their own verb.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moving to the left", "moving left", "sliding left", "drifting left", "slides left"),
    "right": ("moving to the right", "moving right", "sliding right", "drifting right", "moves right"),
    "up": ("moving up", "moving upwards", "sliding up", "rising", "floating up", "slides up", "moves up"),
    "down": ("moving down", "moving downwards", "sliding down", "falling", "sinking down", "moves down"),
    "growing": ("growing", "getting bigger", "expanding", "growing larger", "grows"),
    "shrinking": ("shrinking", "getting smaller", "contracting", "shrinking away", "shrinks"),
    "still": ("standing still", "not moving", "resting in place", "staying still", "stays still"),
}
BACKGROUND_PHRASES = ("on a {bg} background", "over a {bg} backdrop", "against a {bg} background", "on {bg}")
SINGLE_TEMPLATES = (
    "a {colour} {shape} {motion} {where}",
    "{colour} {shape} {motion} {where}",
    "the {colour} {shape} is {motion} {where}",
    "a {colour} {shape} {motion}",
    "{where}, a {colour} {shape} {motion}",
)


@dataclass(frozen=True, slots=True)
class ShapeSpec:
    """One shape in a clip: what it is, how it moves, and where (pixels, at the clip's size)."""

    colour: str
    shape: str
    motion: str
    x: float  # centre at the first frame
    y: float
    size: float  # half the width at the first frame
    travel: float  # pixels moved (left/right/up/down) or scale factor change (growing/shrinking)


@dataclass(frozen=True, slots=True)
class Clip:
    """A drawn clip: (T, H, W, 3) uint8 frames, its caption and what it shows."""

    frames: np.ndarray
    caption: str
    background: str
    shapes: tuple[ShapeSpec, ...]


@dataclass(frozen=True, slots=True)
class ClipConfig:
    """Size and length of the clips, and how often a clip holds two shapes."""

    width: int = 64
    height: int = 64
    num_frames: int = 17
    two_shape_share: float = 0.2
    supersample: int = 4  # drawn this many times larger, then box-filtered down: anti-aliased edges


def allowed(colour: str, shape: str, motion: str, *, held_out: bool = False) -> bool:
    """Whether a triple belongs to the training set (or, with `held_out`, to the held-out set)."""
    return ((colour, shape, motion) in HELD_OUT) == held_out


def caption_for(
    rng: np.random.Generator, background: str, shapes: tuple[ShapeSpec, ...], *, with_background: bool = True
) -> str:
    """A caption for the shapes, from a randomly chosen template and randomly chosen synonyms."""
    where = str(rng.choice(BACKGROUND_PHRASES)).format(bg=background)
    parts = []
    for spec in shapes:
        shape_word = str(rng.choice(SHAPE_WORDS[spec.shape]))
        motion = str(rng.choice(MOTION_PHRASES[spec.motion]))
        parts.append((spec.colour, shape_word, motion))
    if len(parts) == 1:
        colour, shape_word, motion = parts[0]
        templates = SINGLE_TEMPLATES if with_background else (SINGLE_TEMPLATES[3],)
        template = str(rng.choice(templates))
        return template.format(colour=colour, shape=shape_word, motion=motion, where=where)
    first, second = (f"a {c} {s} {m}" for c, s, m in parts)
    joined = f"{first} and {second}"
    return f"{joined} {where}" if with_background else joined


def describe(colour: str, shape: str, motion: str, background: str) -> str:
    """The plain evaluation caption for one shape: "a red circle moving to the left on a black background"."""
    return f"a {colour} {shape} {MOTION_PHRASES[motion][0]} on a {background} background"


def sample_shape(
    rng: np.random.Generator,
    config: ClipConfig,
    *,
    colour: str | None = None,
    shape: str | None = None,
    motion: str | None = None,
    held_out: bool = False,
    background: str | None = None,
) -> ShapeSpec:
    """A random shape whose triple is a training one (or, with `held_out`, a held-out one).

    Given attributes are kept; the others are drawn until the triple is in the wanted set.
    """
    for _ in range(1000):
        c = colour or str(rng.choice(list(COLOURS)))
        s = shape or str(rng.choice(SHAPES))
        m = motion or str(rng.choice(MOTIONS))
        if allowed(c, s, m, held_out=held_out) and (background is None or (c, background) not in CLASHES):
            break
    else:
        wanted = "held-out" if held_out else "training"
        raise ValueError(f"no {wanted} triple with {colour}, {shape}, {motion}")
    side = min(config.width, config.height)
    size = float(rng.uniform(0.13, 0.19)) * side
    travel = 0.0
    if m in MOVES:
        travel = float(rng.uniform(0.35, 0.5)) * side
    elif m in ("growing", "shrinking"):
        travel = float(rng.uniform(0.6, 0.9))
    x, y = _start_position(rng, config, m, size, travel)
    return ShapeSpec(colour=c, shape=s, motion=m, x=x, y=y, size=size, travel=travel)


def _start_position(
    rng: np.random.Generator, config: ClipConfig, motion: str, size: float, travel: float
) -> tuple[float, float]:
    """A start centre from which the whole path stays inside the frame."""
    w, h = config.width, config.height
    margin = size * (1 + (travel if motion == "growing" else 0)) + 1
    lo_x, hi_x, lo_y, hi_y = margin, w - margin, margin, h - margin
    if motion == "left":
        lo_x += travel
    elif motion == "right":
        hi_x -= travel
    elif motion == "up":
        lo_y += travel
    elif motion == "down":
        hi_y -= travel
    return float(rng.uniform(lo_x, max(lo_x, hi_x))), float(rng.uniform(lo_y, max(lo_y, hi_y)))


def shape_at(spec: ShapeSpec, progress: float) -> tuple[float, float, float]:
    """Centre x, y and half-width of a shape at `progress` (0: first frame, 1: last)."""
    dx = dy = 0.0
    scale = 1.0
    if spec.motion == "left":
        dx = -spec.travel * progress
    elif spec.motion == "right":
        dx = spec.travel * progress
    elif spec.motion == "up":
        dy = -spec.travel * progress
    elif spec.motion == "down":
        dy = spec.travel * progress
    elif spec.motion == "growing":
        scale = 1.0 + spec.travel * progress
    elif spec.motion == "shrinking":
        scale = 1.0 + spec.travel * (1.0 - progress)
    return spec.x + dx, spec.y + dy, spec.size * scale


def shape_polygon(shape: str, x: float, y: float, r: float) -> list[tuple[float, float]] | None:
    """The outline of a shape centred at (x, y) with half-width r; None for a circle (drawn as an ellipse)."""
    if shape == "circle":
        return None
    if shape == "square":
        return [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    if shape == "triangle":
        # Point up; the centroid sits on (x, y) so motion tracks the centre of mass.
        height = 2 * r * 0.95
        top, bottom = y - 2 * height / 3, y + height / 3
        return [(x, top), (x + r, bottom), (x - r, bottom)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -np.pi / 2 + k * np.pi / 5
            points.append((x + radius * float(np.cos(angle)), y + radius * float(np.sin(angle))))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def overlap(first: ShapeSpec, second: ShapeSpec, samples: int = 9) -> bool:
    """Whether the two shapes come closer than touching (with a small gap) anywhere along their paths."""
    for k in range(samples):
        x1, y1, r1 = shape_at(first, k / (samples - 1))
        x2, y2, r2 = shape_at(second, k / (samples - 1))
        # Circumscribed circles: a square's corner reaches r * sqrt(2) from its centre.
        if np.hypot(x1 - x2, y1 - y2) < 1.45 * (r1 + r2) + 2:
            return True
    return False


def draw_frame(
    background: str, shapes: tuple[ShapeSpec, ...], progress: float, config: ClipConfig
) -> np.ndarray:
    """One (H, W, 3) uint8 frame of the clip at `progress`."""
    k = config.supersample
    image = Image.new("RGB", (config.width * k, config.height * k), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    for spec in shapes:
        x, y, r = (value * k for value in shape_at(spec, progress))
        colour = COLOURS[spec.colour]
        polygon = shape_polygon(spec.shape, x, y, r)
        if polygon is None:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.polygon(polygon, fill=colour)
    if k > 1:
        image = image.resize((config.width, config.height), Image.Resampling.BOX)
    return np.asarray(image)


def render(background: str, shapes: tuple[ShapeSpec, ...], config: ClipConfig) -> np.ndarray:
    """All frames of a clip, (T, H, W, 3) uint8."""
    last = max(config.num_frames - 1, 1)
    return np.stack([draw_frame(background, shapes, t / last, config) for t in range(config.num_frames)])


@dataclass(frozen=True, slots=True)
class ClipPlan:
    """What a clip shows and its caption, before any pixel is drawn."""

    background: str
    shapes: tuple[ShapeSpec, ...]
    caption: str


def plan_clip(seed: int, config: ClipConfig | None = None, *, held_out: bool = False) -> ClipPlan:
    """The plan for `seed`: one or two shapes, all of training (or, with `held_out`, held-out) triples."""
    config = config or ClipConfig()
    rng = np.random.default_rng(seed)
    background = str(rng.choice(list(BACKGROUNDS)))
    count = 2 if rng.random() < config.two_shape_share else 1
    shapes: tuple[ShapeSpec, ...] = ()
    for _ in range(100):
        if len(shapes) == count:
            break
        spec = sample_shape(rng, config, held_out=held_out, background=background)
        # Two shapes of one colour read as one, and overlapping shapes hide each other's outline.
        if all(spec.colour != other.colour and not overlap(spec, other) for other in shapes):
            shapes = (*shapes, spec)
    # One caption in ten leaves out the background: users often do.
    caption = caption_for(rng, background, shapes, with_background=rng.random() >= 0.1)
    return ClipPlan(background=background, shapes=shapes, caption=caption)


def make_clip(seed: int, config: ClipConfig | None = None, *, held_out: bool = False) -> Clip:
    """The clip for `seed` (`plan_clip`, drawn): the same seed always gives the same pixels and caption."""
    config = config or ClipConfig()
    plan = plan_clip(seed, config, held_out=held_out)
    frames = render(plan.background, plan.shapes, config)
    return Clip(frames=frames, caption=plan.caption, background=plan.background, shapes=plan.shapes)


def recaption(plan: ClipPlan, clip_seed: int, draw: int) -> str:
    """Another caption for the same clip (training draws a fresh one each time), fixed by the two seeds."""
    rng = np.random.default_rng([clip_seed, draw])
    return caption_for(rng, plan.background, plan.shapes, with_background=rng.random() >= 0.1)


def vocabulary() -> list[str]:
    """Every word a caption can hold, sorted (the trained tokenizer's words)."""
    phrases = [*SINGLE_TEMPLATES, *BACKGROUND_PHRASES, "and"]
    phrases += [*COLOURS, *BACKGROUNDS, *SHAPES, *MOTIONS]
    phrases += [w for words in SHAPE_WORDS.values() for w in words]
    phrases += [p for ps in MOTION_PHRASES.values() for p in ps]
    words = set()
    for phrase in phrases:
        for word in phrase.replace(",", " ").split():
            if not word.startswith("{"):
                words.add(word)
    return sorted(words)


def evaluation_prompts(*, held_out: bool, count: int, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(colour, shape, motion, background) for `count` evaluation prompts of held-out or seen triples.

    Held-out: the held-out triples in a fixed order (cycled when `count` exceeds them). Seen: training
    triples drawn with `seed`. Backgrounds are drawn so the colour is never one that clashes.
    """
    rng = np.random.default_rng(seed)
    if held_out:
        triples = sorted(HELD_OUT)
    else:
        seen = [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS if (c, s, m) not in HELD_OUT]
        order = rng.permutation(len(seen))
        triples = [seen[i] for i in order]
    prompts = []
    for i in range(count):
        colour, shape, motion = triples[i % len(triples)]
        backgrounds = [b for b in BACKGROUNDS if (colour, b) not in CLASHES]
        prompts.append((colour, shape, motion, str(rng.choice(backgrounds))))
    return prompts
