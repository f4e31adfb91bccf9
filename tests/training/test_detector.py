"""The classical detector reads the generator's own clips right: colour, shape, motion, consistency."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model.training.data import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    ClipConfig,
    evaluation_prompts,
    make_clip,
)
from model.training.detector import detect


def test_detector_reads_every_attribute_of_single_shape_clips() -> None:
    config = ClipConfig(two_shape_share=0.0)
    wrong = []
    for seed in range(150):
        clip = make_clip(seed, config)
        spec = clip.shapes[0]
        found = detect(clip.frames)
        if (found.colour, found.shape, found.motion, found.consistent) != (
            spec.colour,
            spec.shape,
            spec.motion,
            True,
        ):
            wrong.append((seed, clip.caption, found.colour, found.shape, found.motion, found.consistent))
    assert wrong == []


def test_detector_reads_held_out_clips_too() -> None:
    config = ClipConfig(two_shape_share=0.0)
    for seed in range(40):
        clip = make_clip(seed, config, held_out=True)
        spec = clip.shapes[0]
        found = detect(clip.frames)
        assert (found.colour, found.shape, found.motion) == (spec.colour, spec.shape, spec.motion), (
            clip.caption
        )


def test_detector_tracks_each_shape_of_a_two_shape_clip_by_colour() -> None:
    clips = [make_clip(seed, ClipConfig(two_shape_share=1.0)) for seed in range(40)]
    pairs = [clip for clip in clips if len(clip.shapes) == 2]
    assert len(pairs) >= 10
    for clip in pairs:
        for spec in clip.shapes:
            found = detect(clip.frames, colour=spec.colour)
            assert (found.shape, found.motion) == (spec.shape, spec.motion), (clip.caption, spec.colour)


def test_detector_works_at_other_sizes() -> None:
    config = ClipConfig(width=128, height=96, num_frames=9, two_shape_share=0.0)
    for seed in range(10):
        clip = make_clip(seed, config)
        spec = clip.shapes[0]
        found = detect(clip.frames)
        assert (found.colour, found.shape, found.motion) == (spec.colour, spec.shape, spec.motion)


def test_softened_outlines_keep_their_shape_until_the_points_are_gone() -> None:
    """A decoder's slightly soft edges fill a star's bounding box past the crisp star's share; the gaps
    between its points (its hull) still tell it from a circle. Blurred until the points merge, it is not
    called a star any more: the convex shapes never are."""

    def blurred(frames: np.ndarray, radius: float) -> np.ndarray:
        blur = ImageFilter.GaussianBlur(radius)
        return np.stack([np.asarray(Image.fromarray(frame).filter(blur)) for frame in frames])

    config = ClipConfig(two_shape_share=0.0)
    clips = [make_clip(seed, config, held_out=True) for seed in range(48)]
    for clip in clips:
        assert detect(blurred(clip.frames, 1.2)).shape == clip.shapes[0].shape, clip.caption
    assert sum(clip.shapes[0].shape == "star" for clip in clips) >= 8
    assert all(detect(blurred(clip.frames, 3.0)).shape != "star" for clip in clips)


def outline_clip(radius_at: Callable[[np.ndarray], np.ndarray], frames: int = 9) -> np.ndarray:
    """A red outline on navy moving right: the polygon whose radius at angle t is radius_at(t) * 12 px,
    drawn 4x supersampled, then softened a little as a decoder softens edges."""
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radii = 12 * 4 * radius_at(angles)
    clip = []
    for t in range(frames):
        image = Image.new("RGB", (256, 256), BACKGROUNDS["navy"])
        x, y = 4 * (20 + 3 * t), 128
        points = list(zip(x + radii * np.cos(angles), y + radii * np.sin(angles), strict=True))
        ImageDraw.Draw(image).polygon(points, fill=COLOURS["red"])
        small = image.resize((64, 64), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(0.8))
        clip.append(np.asarray(small))
    return np.stack(clip)


def test_a_ragged_square_is_a_square_and_a_lumpy_circle_a_circle() -> None:
    """A generated square's outline is ragged and soft, so it fills 0.72-0.88 of its bounding box, as a
    circle does, where a drawn one fills all of it; its corners still tell it from a circle. A circle's
    wobbly outline does not make it a square."""

    def ragged_square(angles: np.ndarray) -> np.ndarray:
        square = 1 / np.maximum(np.abs(np.cos(angles)), np.abs(np.sin(angles)))  # the unit square's edge
        return square * (1 + 0.06 * np.sin(7 * angles))

    square = detect(outline_clip(ragged_square))
    assert np.median([blob.fill for blob in square.blobs if blob is not None]) < 0.89
    assert (square.colour, square.shape, square.motion) == ("red", "square", "right")
    for wobble in (np.sin, np.cos):
        lumpy = detect(outline_clip(lambda angles, f=wobble: 1 + 0.08 * f(5 * angles)))
        assert (lumpy.colour, lumpy.shape, lumpy.motion) == ("red", "circle", "right")


def test_noise_is_not_a_consistent_shape() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (17, 64, 64, 3), dtype=np.uint8)
    assert not detect(noise).consistent


def test_a_blank_clip_has_no_shape() -> None:
    found = detect(np.full((9, 64, 64, 3), 40, dtype=np.uint8))
    assert (found.colour, found.shape, found.motion, found.consistent) == (None, None, None, False)


def test_evaluation_prompts_span_shapes_and_motions() -> None:
    held = evaluation_prompts(held_out=True, count=16)
    seen = evaluation_prompts(held_out=False, count=16)
    assert len(set(held)) == 16
    assert {p[1] for p in held} == set(SHAPES)
    assert {p[2] for p in held} == set(MOTIONS)
    assert not {p[:3] for p in seen} & {p[:3] for p in held}
