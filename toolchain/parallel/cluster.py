"""Ray: joining a cluster (or starting a local one), creating the block actors, cleaning up.

Ray is imported here, lazily: nothing else in the toolchain (the device runtime, most commands)
imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

from toolchain.errors import ToolchainError

# Actors run one BLAS thread each: the placement decides the parallelism, not the BLAS pool.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

CONNECT_TIMEOUT_S = 10.0


def probe_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with a clear message, when nothing answers at a Ray address (host:port or ray://...)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ToolchainError(
            f"--address {address!r} is not HOST:PORT",
            hint="e.g. --address 192.0.2.10:6379 (the head's `ray start --head --port=6379`)",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ToolchainError(
            f"no Ray cluster answers at {address} within {timeout_s:g} s ({exc.strerror or exc})",
            hint="start the head with `ray start --head --port=6379` and pass --address HEAD_IP:6379, "
            "or leave out --address to train on a local Ray",
        ) from None


_QUIET = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


def start_local_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """A local Ray whose worker processes inherit single-threaded BLAS settings (set only while the
    raylet starts, then restored), so actors need no per-actor runtime environment. `kwargs` go to
    ray.init (e.g. _temp_dir)."""
    import ray

    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        ray.init(num_cpus=num_cpus, **_QUIET, **kwargs)
        _STARTED_LOCAL[0] = True
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stop_ray() -> None:
    import ray

    ray.shutdown()
    _STARTED_LOCAL[0] = False


def workers_single_threaded() -> bool:
    """True when this process started the local Ray with the BLAS settings (see start_local_ray)."""
    return _STARTED_LOCAL[0]


_STARTED_LOCAL = [False]


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Use Ray as it is when already initialised (tests, notebooks); else join `address` or start a
    local Ray, and shut down what this call started."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    if address:
        probe_address(address)
        try:
            ray.init(address=address, **_QUIET)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ToolchainError(f"could not join the Ray cluster at {address}: {exc}") from None
    else:
        start_local_ray(num_cpus)
    try:
        yield ray
    finally:
        stop_ray()


def actor_options(resources: dict[str, float], inherit_env: bool) -> dict[str, Any]:
    """Actors hold no CPU reservation (many small blocks share the cores) and run single-threaded BLAS,
    so the thread CPU clock they report sees all their work: inherited from a local Ray started by
    `start_local_ray`, else set per actor. `resources` pins an actor on a cluster node."""
    opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
    if not inherit_env:
        opts["runtime_env"] = {"env_vars": SINGLE_THREAD_ENV}
    if resources:
        opts["resources"] = resources
    return opts


def actor_errors() -> tuple[type[BaseException], ...]:
    import ray

    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
