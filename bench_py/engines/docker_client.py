"""The Docker client every part of voxbench talks to the daemon through."""

from __future__ import annotations

from typing import Any


def docker_client(url: str | None) -> Any:
    """The daemon at ``url`` (``preflight.docker_url``), or the environment's (DOCKER_HOST, the default socket)."""
    import docker  # imported when Docker is needed: the controller's local verbs never touch it

    return docker.DockerClient(base_url=url) if url else docker.from_env()
