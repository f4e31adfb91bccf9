"""Fault-test fixtures, shared by the whole package: a Redis server, an S3 endpoint (moto behind a fault
proxy) and a Postgres database of its own, so killing, stopping or terminating them touches no other
test; and on them one API and one webhook worker running beat (the sweepers). Each test starts the
generation workers it needs (`gpu`); they are killed after it, and jobs it left unfinished canceled."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import free_port, new_database
from tests.e2e.harness import Process
from tests.faults.deployment import Deployment, restore
from tests.faults.servers import FaultProxy, RedisServer


@pytest.fixture(scope="package")
def database() -> Iterator[str]:
    with new_database("kinema_faults") as url:
        yield url


@pytest.fixture(scope="package")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="package")
def s3() -> Iterator[FaultProxy]:
    """moto's S3 server, reached through a proxy the tests stop, start and make cut requests."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    proxy = FaultProxy(free_port(), moto.get_host_and_port()[1])
    proxy.start()
    yield proxy
    proxy.stop()
    moto.stop()


@pytest.fixture(scope="package")
def deployment(
    database: str, redis_server: RedisServer, s3: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The API and the webhook worker with beat, running on this package's servers."""
    home = tmp_path_factory.mktemp("faults-home")
    deployment = Deployment.create(
        database_url=database,
        redis_url=redis_server.url,
        s3_url=s3.url,
        home=home,
        model_cache=home / "models",
    )
    deployment.beat_worker()
    deployment.api()
    yield deployment
    deployment.stop()


@pytest.fixture
def gpu(
    deployment: Deployment, redis_server: RedisServer, s3: FaultProxy
) -> Iterator[Callable[..., Process]]:
    """Starts generation workers (`gpu("gpu-a", **env)`); after the test they are killed and `restore`
    runs, so the next test starts clean."""
    started: list[Process] = []

    def start(name: str, **env: str) -> Process:
        started.append(deployment.gpu_worker(name, **env))
        return started[-1]

    yield start
    for process in started:
        deployment.kill(process)
    restore(deployment, redis_server, s3)
