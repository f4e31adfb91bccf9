"""Settings: one object, read from `KINEMA_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.model_options import ServedModel, parse_models

DEFAULT_HOME = Path(".kinema")


class Settings(BaseSettings):
    """Everything a deployment configures. Defaults are the embedded, no-server set-up."""

    model_config = SettingsConfigDict(env_prefix="KINEMA_", env_file=".env", extra="ignore")

    # Where the embedded defaults keep their files (SQLite database, broker, videos, model cache).
    home: Path = DEFAULT_HOME

    # Postgres in production (postgresql+psycopg://...); SQLite for the embedded default.
    database_url: str = ""
    # Celery broker: redis://... in production; a kombu SQLite transport needs no server.
    broker_url: str = ""
    # Live progress and (later) rate limits; empty disables the Redis progress channel.
    redis_url: str = ""
    queue_name: str = "kinema.generate"
    # Authenticated keys are remembered per API process this long (0: off); revokes clear it at once.
    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    # Requests one API process works on at once (until their response starts); more get 503 (0: no cap).
    max_in_flight_requests: int = Field(default=64, ge=0)
    # Redis transport: how long an unacknowledged task waits before redelivery.
    broker_visibility_timeout_s: int = 3600

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    s3_endpoint_url: str | None = None
    # What presigned URLs point at, when clients reach S3 by another name than the API does.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "kinema"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_create_bucket: bool = True
    presign_expires_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # The default model: what a request that names none gets (its queue is KINEMA_QUEUE_NAME). The
    # embedded default is Kinema's small trained model; `builtin:tiny-wan` (random weights) serves tests.
    model_id: str = "builtin:kinema-shapes"
    # More served models, id -> local diffusers directory: `{"mochi": "/models/mochi"}` or
    # `mochi=/models/mochi,wan-14b=/models/wan`, or with options `{"mochi": {"path": ..., "options":
    # {"default_steps": 30}}}` (app/model_options.py). Each gets its own queue (app/served_models.py).
    models: Annotated[dict[str, ServedModel], NoDecode] = {}
    # Set by `kinema worker --model ID`: the model this worker loads and whose queue it takes.
    worker_model: str = ""
    model_cache_dir: Path | None = None

    # Worker speed switches (model.config.InferenceOptions); the defaults are plain diffusers.
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    # Empty: diffusers' default (torch SDPA); else e.g. flash, _flash_3, _native_cudnn, sage.
    attention_backend: str = ""
    compile: Literal["none", "regional"] = "none"
    cfg_batch: bool = False
    step_cache: Literal["none", "first_block"] = "none"
    step_cache_threshold: float = Field(default=0.05, ge=0)
    vae_tiling: bool = False
    video_encoder: Literal["libx264", "h264_nvenc", "auto"] = "libx264"
    # Soundtracks (`audio` in a request): a local diffusers Stable Audio Open or AudioLDM 2 directory, or
    # builtin:tiny-stable-audio / builtin:tiny-audioldm2 (random weights: noise); empty: requests for audio
    # are refused. Its denoising steps: 0 is the model's default (4 for the built-ins, 100, 200).
    audio_model: str = "builtin:tiny-stable-audio"
    audio_steps: int = Field(default=0, ge=0)

    max_duration_s: int = Field(default=60, ge=1)
    max_width: int = 1920
    max_height: int = 1920
    max_pixels: int = 1920 * 1080
    max_prompt_length: int = Field(default=2000, ge=1)
    max_steps: int = 100
    max_fps: int = 60

    # The public URL of the API, for links in responses; empty: the URL each request came in on.
    api_base_url: str = ""

    # Worker: a job whose heartbeat is older than this is taken over by a redelivered task.
    job_lease_s: int = Field(default=60, ge=2)
    progress_write_interval_s: float = 0.25

    # Failures and recovery (README). The job sweeper (Celery beat) runs this often: it re-sends queued
    # jobs whose task the broker no longer holds, and re-queues running jobs whose heartbeat stopped.
    job_sweep_interval_s: float = Field(default=30, gt=0)
    # A queued job whose task is not in the broker this long after it was queued is sent again.
    job_redispatch_after_s: float = Field(default=60, gt=0)
    # Runs a job may start (first run and takeovers after a lost worker); then it fails `worker_lost`.
    job_max_attempts: int = Field(default=3, ge=1)
    # Worker state writes retry a dropped database connection with backoff this long, then give up.
    db_retry_deadline_s: float = Field(default=30, ge=0)
    # Output uploads: tries per object, the first wait (doubled each retry, at most 30 s), the time limit.
    storage_retry_attempts: int = Field(default=6, ge=1)
    storage_retry_backoff_s: float = Field(default=1.0, ge=0)
    storage_retry_deadline_s: float = Field(default=120, gt=0)
    # botocore's own attempts per S3 call (standard retry mode), inside each of the tries above.
    s3_max_attempts: int = Field(default=5, ge=1)
    # Cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT): let the job run this long, then hand
    # it back to the queue. 0: hand it back at once. A plain SIGTERM waits for the job to finish.
    worker_soft_shutdown_s: float = Field(default=0, ge=0)
    # How long an Idempotency-Key replays its job; after that the same key makes a new job.
    idempotency_key_ttl_s: int = Field(default=24 * 3600, ge=1)
    # How often a running job's worker reads its row for a cancel request (Redis is read every step).
    cancel_check_interval_s: float = Field(default=0.5, gt=0)
    # GET /jobs/{id}/events: how often the row is read (without Redis: the only source of updates).
    events_poll_interval_s: float = Field(default=0.5, gt=0)
    watermark_text: str = "AI-generated"
    watermark_enabled: bool = True
    watermark_opacity: float = Field(default=0.8, ge=0, le=1)
    watermark_position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "bottom-right"
    # Text height as a fraction of the frame height.
    watermark_scale: float = Field(default=0.04, gt=0, le=1)
    # Moving mark: the label visits the four corners in turn, this many seconds in each; 0: it stays put.
    watermark_move_interval_s: float = Field(default=0, ge=0)
    # Invisible watermark: who issued the video (a name; its 16-bit hash goes into every frame).
    watermark_issuer: str = "kinema"
    invisible_watermark_enabled: bool = True
    # C2PA signing: a PEM chain (leaf first) and its private key; empty: a development chain in
    # $KINEMA_HOME/certs, created on first use (`kinema certs init`).
    c2pa_cert_path: Path | None = None
    c2pa_key_path: Path | None = None
    # A RFC 3161 timestamp authority for the manifest's signature; empty offline.
    c2pa_tsa_url: str = ""
    # POST /v1/provenance/verify: the largest upload.
    verify_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)

    # Untrusted inputs (app/inputs): images and videos uploaded or fetched for image-to-video and edits.
    input_image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Checked from the header before decoding: a small file can claim a huge canvas (decompression bomb).
    input_image_max_pixels: int = Field(default=25_000_000, ge=1)
    input_video_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    input_video_max_duration_s: float = Field(default=60, gt=0)
    input_video_max_side: int = Field(default=4096, ge=16)
    input_video_max_pixels: int = Field(default=3840 * 2160, ge=1)
    # image_url / video_url downloads: the whole download within this time, then it is refused.
    input_fetch_timeout_s: float = Field(default=30, gt=0)
    # Development and tests only: production refuses private, loopback and link-local URLs (SSRF).
    input_allow_private_urls: bool = False

    # Per-key limits for keys that set none of their own; 0 means unlimited.
    default_rate_limit_rpm: int = Field(default=600, ge=0)
    default_max_concurrent_jobs: int = Field(default=16, ge=0)
    default_monthly_quota_s: int = Field(default=0, ge=0)

    # Webhooks: their own queue, so a delivery never waits behind a generation.
    webhook_queue_name: str = "kinema.webhooks"
    # Seconds to wait before each retry of a failed delivery; after the last one the delivery fails.
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    webhook_timeout_s: float = Field(default=10, gt=0)
    # Development and tests only: production refuses private, loopback and metadata addresses (SSRF).
    webhook_allow_private_targets: bool = False
    # The sweeper (Celery beat) runs this often and re-sends deliveries whose task never started.
    webhook_sweep_interval_s: float = Field(default=30, gt=0)
    webhook_redispatch_after_s: float = Field(default=60, gt=0)

    # Content filters (app/moderation): the policy file; empty: the shipped default policy.
    moderation_policy: str = ""
    # An external classifier (OpenAI-moderation-like HTTP endpoint) asked after the rules; empty: none.
    moderation_url: str = ""
    moderation_api_key: str = ""
    moderation_timeout_s: float = Field(default=2.0, gt=0)
    # When the classifier cannot answer: false refuses the request (503), true lets it through.
    moderation_fail_open: bool = False
    # Input images and video frames (app/moderation/media.py), checked in the worker: an image
    # classifier (OpenAI-moderation-like, image_url inputs) asked after the sanity checks; empty: none.
    # It shares the API key and fail-open setting above.
    moderation_image_url: str = ""
    moderation_image_timeout_s: float = Field(default=10.0, gt=0)

    # Operations (docs/operations.md). Logs: one JSON object a line, or a console format for people.
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    # One line per API request (method, route, status, duration, request and key ids).
    access_log: bool = True
    # GET /metrics on the API; a token makes it ask for `Authorization: Bearer <token>`.
    metrics_enabled: bool = True
    metrics_token: str = ""
    # Workers serve their metrics on this port (0: not served); see docs/operations.md.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # Request limits (app/limits/requests.py): non-multipart bodies (JSON), all header lines together,
    # and how long a body may take: between two chunks, and in all.
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    request_body_idle_timeout_s: float = Field(default=30, gt=0)
    request_body_timeout_s: float = Field(default=600, gt=0)
    # Browsers on these origins may call the API (CORS); empty: none (the playground is same-origin).
    cors_origins: Annotated[list[str], NoDecode] = []
    # Strict-Transport-Security max-age on every response when > 0 (serve over HTTPS only, then set it).
    hsts_max_age_s: int = Field(default=0, ge=0)

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _schedule_list(cls, value: object) -> object:
        # `5,300,1800` or `[5, 300, 1800]` in the environment.
        if isinstance(value, str):
            return [float(part) for part in value.strip().strip("[]").split(",") if part.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        # `https://a.example,https://b.example` in the environment.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _model_map(cls, value: object) -> object:
        # JSON (`{"id": "/path"}` or `{"id": {"path": "/path", "options": {...}}}`) or `id=/path,id2=/path2`.
        return parse_models(value)

    @model_validator(mode="after")
    def _model_options_within_limits(self) -> Settings:
        # A default the deployment's own limits would refuse would fail every request that leaves it out.
        for model_id, served in self.models.items():
            options = served.options
            if options.default_steps is not None and options.default_steps > self.max_steps:
                raise ValueError(
                    f"KINEMA_MODELS: {model_id!r}: options.default_steps {options.default_steps} is over "
                    f"KINEMA_MAX_STEPS ({self.max_steps})"
                )
            if options.default_fps is not None and options.default_fps > self.max_fps:
                raise ValueError(
                    f"KINEMA_MODELS: {model_id!r}: options.default_fps {options.default_fps} is over "
                    f"KINEMA_MAX_FPS ({self.max_fps})"
                )
        return self

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'kinema.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def effective_storage_dir(self) -> Path:
        return (self.storage_dir or self.home / "storage").expanduser().resolve()

    @property
    def max_multipart_body_bytes(self) -> int:
        """The largest multipart body: the largest file any endpoint takes, plus room for the fields."""
        largest = max(self.input_image_max_bytes, self.input_video_max_bytes, self.verify_max_bytes)
        return largest + 1024 * 1024

    @property
    def effective_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.home / "models").expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
