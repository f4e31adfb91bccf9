"""Property tests for request validation (`app/jobs/parameters.py`): whatever `resolve` accepts, the
model can make; whatever it refuses, it refuses with a 400 naming a field of the request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.config import Settings
from app.errors import InvalidRequest
from app.jobs.parameters import MIN_SIDE, PRESETS, SIZE_MULTIPLE, resolve
from app.jobs.schemas import GenerateRequest
from model.registry import BUILTIN_TINY_WAN, get_spec

# Each family's text-to-video pipeline, as a deployment would name it (a local diffusers directory).
PIPELINES = ("WanPipeline", "LTXPipeline", "CogVideoXPipeline")
FIELDS = set(GenerateRequest.model_fields)

sizes = st.integers(min_value=0, max_value=4200)
resolutions = st.one_of(
    st.none(),
    st.sampled_from(sorted({name for name, _ in PRESETS} | {"480P", " 720p ", "4k", "2160p"})),
    st.builds(lambda w, h: f"{w}x{h}", sizes, sizes),
    st.builds(
        lambda w, h: f"{w * SIZE_MULTIPLE}x{h * SIZE_MULTIPLE}",
        sizes.map(lambda n: n // 8),
        sizes.map(lambda n: n // 8),
    ),
    st.text(max_size=12),
)
requests = st.fixed_dictionaries(
    {"prompt": st.text(max_size=2100)},
    optional={
        "duration": st.floats(min_value=0, max_value=120, exclude_min=True, allow_nan=False),
        "fps": st.integers(min_value=1, max_value=240),
        "resolution": resolutions,
        "aspect_ratio": st.sampled_from(["16:9", "9:16", "1:1", "4:3", "3:4"]),
        "num_inference_steps": st.integers(min_value=1, max_value=300),
        "guidance_scale": st.floats(min_value=0, max_value=30, allow_nan=False),
        "seed": st.integers(min_value=0, max_value=2**32 - 1),
        "negative_prompt": st.text(max_size=2100),
    },
)


@pytest.fixture(scope="module", params=[BUILTIN_TINY_WAN, *PIPELINES])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings serving one model: the built-in, or a directory naming a family's pipeline."""
    model_id = request.param
    if model_id != BUILTIN_TINY_WAN:
        path: Path = tmp_path_factory.mktemp(model_id)
        (path / "model_index.json").write_text(json.dumps({"_class_name": model_id}))
        model_id = str(path)
    return Settings(model_id=model_id, home=tmp_path_factory.getbasetemp())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=requests)
def test_accepted_requests_fit_the_model(deployment: Settings, fields: dict[str, object]) -> None:
    try:
        body = GenerateRequest.model_validate(fields)
    except ValidationError:
        return  # a 400 from the schema, before resolve
    try:
        p = resolve(body, deployment)
    except InvalidRequest as exc:
        assert exc.status_code == 400 and exc.param in FIELDS, (exc.param, exc.message)
        return
    event("accepted")  # `pytest --hypothesis-show-statistics` shows how many were
    spec = get_spec(deployment.model_id)
    # Size: on the encoder's grid, within the deployment's and the model's limits.
    assert p.width % SIZE_MULTIPLE == 0 and p.height % SIZE_MULTIPLE == 0
    assert MIN_SIDE <= p.width <= min(deployment.max_width, spec.max_width)
    assert MIN_SIDE <= p.height <= min(deployment.max_height, spec.max_height)
    assert p.width * p.height <= deployment.max_pixels
    gen_w, gen_h = spec.generation_size(p.width, p.height)
    assert gen_w % spec.spatial_multiple == 0 and 0 <= gen_w - p.width < spec.spatial_multiple
    assert gen_h % spec.spatial_multiple == 0 and 0 <= gen_h - p.height < spec.spatial_multiple
    # Frames: the video's count, and what the model makes for it, within the model's rules.
    assert 1 <= p.fps <= deployment.max_fps
    assert p.num_frames == max(1, round(p.duration_s * p.fps))
    made = spec.num_frames_for(p.duration_s, p.fps)
    assert (made - 1) % spec.frame_step == 0 and made >= p.num_frames
    assert made <= spec.max_frames_total
    assert p.duration_s <= deployment.max_duration_s
    # Sampler and prompt.
    assert 1 <= p.num_inference_steps <= deployment.max_steps
    assert p.prompt == p.prompt.strip() and 1 <= len(p.prompt) <= deployment.max_prompt_length
    assert len(p.negative_prompt) <= deployment.max_prompt_length
