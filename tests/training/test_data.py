"""The procedural clip generator: deterministic per seed, held-out triples kept out of training clips."""

from __future__ import annotations

import numpy as np
import pytest

from model.training.data import (
    BACKGROUNDS,
    CLASHES,
    COLOURS,
    HELD_OUT,
    MOTIONS,
    SHAPE_WORDS,
    SHAPES,
    ClipConfig,
    make_clip,
    plan_clip,
    recaption,
    vocabulary,
)


def test_the_same_seed_gives_the_same_clip_and_caption() -> None:
    first, again = make_clip(123), make_clip(123)
    assert np.array_equal(first.frames, again.frames)
    assert first.caption == again.caption
    assert first.shapes == again.shapes


def test_different_seeds_give_different_clips() -> None:
    clips = [make_clip(seed) for seed in range(6)]
    assert len({clip.frames.tobytes() for clip in clips}) == 6


def test_clips_have_the_configured_size_and_length() -> None:
    clip = make_clip(5, ClipConfig(width=48, height=32, num_frames=9))
    assert clip.frames.shape == (9, 32, 48, 3)
    assert clip.frames.dtype == np.uint8


def test_training_clips_never_show_a_held_out_triple() -> None:
    triples = {(s.colour, s.shape, s.motion) for seed in range(400) for s in plan_clip(seed).shapes}
    assert not triples & HELD_OUT
    # ... while every colour, shape and motion on its own is still seen.
    assert {t[0] for t in triples} == set(COLOURS)
    assert {t[1] for t in triples} == set(SHAPES)
    assert {t[2] for t in triples} == set(MOTIONS)


def test_held_out_clips_show_only_held_out_triples() -> None:
    for seed in range(50):
        plan = plan_clip(seed, held_out=True)
        assert all((s.colour, s.shape, s.motion) in HELD_OUT for s in plan.shapes)


def test_held_out_triples_cover_every_colour_shape_and_motion() -> None:
    assert {t[0] for t in HELD_OUT} == set(COLOURS)
    assert {t[1] for t in HELD_OUT} == set(SHAPES)
    assert {t[2] for t in HELD_OUT} == set(MOTIONS)


@pytest.mark.parametrize("seed", range(40))
def test_caption_names_the_colour_and_shape_and_the_colour_never_clashes(seed: int) -> None:
    plan = plan_clip(seed)
    for spec in plan.shapes:
        assert spec.colour in plan.caption
        assert any(word in plan.caption.split() for word in SHAPE_WORDS[spec.shape])
        assert (spec.colour, plan.background) not in CLASHES
    assert plan.background in BACKGROUNDS


def test_captions_vary_and_use_only_the_vocabulary() -> None:
    plan = plan_clip(7)
    captions = {recaption(plan, 7, draw) for draw in range(30)}
    assert len(captions) > 5
    words = set(vocabulary())
    for caption in captions:
        assert set(caption.replace(",", " ").split()) <= words


def test_some_clips_hold_two_shapes_of_different_colours() -> None:
    plans = [plan_clip(seed) for seed in range(100)]
    pairs = [p for p in plans if len(p.shapes) == 2]
    assert 5 <= len(pairs) <= 40
    assert all(p.shapes[0].colour != p.shapes[1].colour for p in pairs)
    assert all(" and " in p.caption for p in pairs)
