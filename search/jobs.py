"""``search submit`` and ``search jobs``: a search as a Ray job, through the Ray Jobs SDK.

The job runs ``python -m search.cli ARGS`` on the cluster's head node, in the uploaded
working directory (this checkout, without its virtual environment, stores and caches), with
the package already installed in the cluster's image (deploy/Dockerfile). Ray 2.60 turns
token authentication on: the token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token and is sent as a Bearer header; a cluster that wants one and gets none is a
one-line error naming where to put it.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from search.errors import ConfigError

# Never uploaded: environments, stores and caches (Ray also honours .gitignore).
EXCLUDES = [".venv", "venv", ".git", "runs", "**/__pycache__", ".pytest_cache", ".ruff_cache", "*.db", "mlruns"]
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def dashboard_address(address: str | None) -> str:
    """The dashboard URL from --address or the environment, as the Ray CLI reads it."""
    for candidate in (address, *(os.environ.get(name) for name in ADDRESS_ENV)):
        if candidate:
            if not candidate.startswith(("http://", "https://")):
                raise ConfigError(f"Ray dashboard address {candidate!r} is not a URL like http://HEAD:8265")
            return candidate.rstrip("/")
    raise ConfigError("no Ray cluster given: pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS")


def client(address: str | None) -> Any:
    """A JobSubmissionClient with the cluster token, or a one-line error."""
    from ray.job_submission import JobSubmissionClient

    from search.backends.ray_tune import TOKEN_HINT, find_auth_token

    url = dashboard_address(address)
    token = find_auth_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except ConnectionError as error:
        raise ConfigError(f"cannot reach the Ray dashboard at {url}: {str(error).splitlines()[0]}") from None
    except Exception as error:
        if type(error).__name__ == "AuthenticationError" or "Authentication" in str(error):
            raise ConfigError(f"the Ray cluster at {url} wants a token: {TOKEN_HINT}") from None
        raise


def entrypoint(search_args: list[str]) -> str:
    """The job's shell command: this CLI, run from the uploaded working directory."""
    return "python -m search.cli " + shlex.join(search_args)


def submit(address: str | None, working_dir: Path, search_args: list[str], job_id: str | None = None) -> str:
    """Submit ``search SEARCH_ARGS`` as a Ray job; return its id."""
    dashboard_address(address)
    if not working_dir.is_dir() or not (working_dir / "search" / "cli.py").is_file():
        raise ConfigError(f"working dir {str(working_dir)!r} is not a checkout of search (no search/cli.py)")
    jobs = client(address)
    runtime_env = {"working_dir": str(working_dir.resolve()), "excludes": EXCLUDES}
    return str(_call(jobs.submit_job, entrypoint=entrypoint(search_args), runtime_env=runtime_env,
                     submission_id=job_id))


def status(address: str | None, job_id: str) -> str:
    return str(_call(client(address).get_job_status, job_id).value)


def logs(address: str | None, job_id: str, follow: bool = False) -> None:
    jobs = client(address)
    if not follow:
        sys.stdout.write(_call(jobs.get_job_logs, job_id))
        return

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(tail())


def stop(address: str | None, job_id: str) -> bool:
    return bool(_call(client(address).stop_job, job_id))


def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return method(*args, **kwargs)
    except RuntimeError as error:  # the SDK's way of saying "no such job" or "request failed"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "401" in str(error) or "Authentication" in str(error):
            from search.backends.ray_tune import TOKEN_HINT

            raise ConfigError(f"the Ray cluster wants a token: {TOKEN_HINT}") from None
        raise ConfigError(f"Ray jobs: {message}") from None
