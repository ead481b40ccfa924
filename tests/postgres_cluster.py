"""A private PostgreSQL cluster from Debian's server binaries, for tests that need a real server
(the stack test's `postgres` service, a DuckLake catalog): initialised like the official image
does from POSTGRES_* (a superuser with a password), listening on loopback only.

initdb refuses to run as root: as root, the cluster belongs to the `postgres` system user that
Debian's package creates, and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path | None:
    """Debian's newest PostgreSQL server binaries (`make stack-deps` installs them), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class Cluster:
    """An initialised cluster; `argv` is its server's command."""

    bindir: Path
    base: Path
    user: str
    password: str
    port: int
    as_owner: list[str]

    @property
    def argv(self) -> list[str]:
        return [
            *self.as_owner,
            str(self.bindir / "postgres"),
            "-D",
            str(self.base / "data"),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
            str(self.base),
            "-c",
            "fsync=off",
        ]

    def _connect(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]

    def ready(self) -> bool:
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), *self._connect(), "-d", "postgres"],
            capture_output=True,
        )
        return done.returncode == 0

    def psql(self, database: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / "psql"), *self._connect(), "-v", "ON_ERROR_STOP=1", "-q"]
            + ["-d", database, *args],
            env={**os.environ, "PGPASSWORD": self.password},
            check=True,
            capture_output=True,
        )

    def libpq(self, database: str) -> str:
        """A libpq connection string (what DuckDB's postgres extension takes)."""
        return (
            f"dbname={database} host=127.0.0.1 port={self.port} user={self.user} "
            f"password={self.password}"
        )


def init(base: Path, *, user: str, password: str, port: int) -> Cluster:
    """initdb into `base/data`, both made reachable by the cluster's owner."""
    binaries = bindir()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL's server binaries are missing: `make stack-deps`")
    owner = "postgres" if os.geteuid() == 0 else None
    data = base / "data"
    data.mkdir(parents=True)
    (base / "pwfile").write_text(password + "\n")
    if owner:
        for path in (base, data, base / "pwfile"):
            shutil.chown(path, owner)
    as_owner = ["runuser", "-u", owner, "--"] if owner else []
    done = subprocess.run(
        [*as_owner, str(binaries / "initdb"), "-D", str(data), "-U", user]
        + [f"--pwfile={base / 'pwfile'}", "--auth=scram-sha-256", "-E", "UTF8"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb {data} failed: {done.stderr[-2000:]}")
    return Cluster(binaries, base, user, password, port, as_owner)


def wait_ready(
    cluster: Cluster, process: subprocess.Popen, log_path: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not cluster.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start; see {log_path}")
        time.sleep(0.5)
