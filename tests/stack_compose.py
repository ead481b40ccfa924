"""docker-compose.yml's services as processes on loopback, for the stack test.

No Docker engine runs here, so the stack test starts each service of the compose file itself,
with the command, environment, volumes, init steps and start order written there, from this
virtualenv (which holds the image's packages: tests/test_packaging.py). What a container would
give a process is mapped in one place, `Machine`:

- host names of the compose network (`postgres:5432`, `minio:9000`, ...) become 127.0.0.1 and
  a free port, in every environment value and command argument;
- the image's project folder (/opt/mlpipeline) is built here by the Dockerfile's own COPY
  instructions (.dockerignore honoured) and its `mlpipeline dbt-manifest` step: a snapshot, so
  edits to the checkout during a run reach the stack no more than they would reach an image;
  /opt/airflow and /data/mlpipeline are a private folder per container, unless a volume mounts
  a shared one (named volumes are folders shared by the services that mount them);
- what a container listens on (0.0.0.0:8080, the log servers' ports) becomes a free loopback
  port, and each container gets its own HOSTNAME (Celery names a worker after it).

Three images are not this project's: PostgreSQL runs from Debian's binaries (initdb as an
unprivileged user, then what the official image's entrypoint does with POSTGRES_* and
/docker-entrypoint-initdb.d); Redis from Debian's redis-server with the compose command; MinIO
is stood in for by moto's S3 server, and minio-init's `mc mb` by creating the buckets it names.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpipeline.devtools.localredis import free_port
from tests import postgres_cluster
from tests.compose_file import (
    dockerfile_env,
    dockerfile_instructions,
    env_of,
    interpolate,
    load_compose,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# Where the image puts the project and Airflow's home (Dockerfile: WORKDIR, AIRFLOW_HOME).
IMAGE_PROJECT = "/opt/mlpipeline"
IMAGE_PRIVATE_DIRS = ("/opt/airflow", "/data/mlpipeline")
# The ports services listen on inside their containers.
CONTAINER_PORTS = {
    "postgres": 5432,
    "redis-celery": 6379,
    "redis-features": 6379,
    "minio": 9000,
    "mlflow": 5000,
    "airflow-apiserver": 8080,
    "airflow-scheduler": 8974,
    "scoring-api": 8000,
}


def build_image_tree(dest: Path) -> Path:
    """The image's WORKDIR as the Dockerfile fills it: its COPY instructions into WORKDIR, then
    its dbt-manifest step. Copies to paths outside WORKDIR (the requirements) are the venv's."""
    instructions = list(dockerfile_instructions((ROOT / "Dockerfile").read_text()))
    workdir = next(args for keyword, args in instructions if keyword == "WORKDIR")
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignore(folder: str, names: list[str]) -> set[str]:
        """.dockerignore's rule: a pattern matches a path from the context's root; `**/`
        matches at any depth."""
        relative = Path(folder).relative_to(ROOT)
        return {
            name
            for name in names
            for pattern in ignored
            if fnmatch.fnmatch((relative / name).as_posix(), pattern)
            or (pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:]))
        }

    for keyword, args in instructions:
        if keyword != "COPY":
            continue
        *sources, target = args.split()
        if target.startswith("/") and not target.startswith(workdir):
            continue
        into = dest / target.removeprefix(workdir).lstrip("/").removeprefix("./")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, into, ignore=ignore, dirs_exist_ok=True)
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into / path.name)
    env = {**os.environ, "PYTHONPATH": str(dest), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    subprocess.run([str(VENV_BIN / "mlpipeline"), "dbt-manifest"], cwd=dest, env=env,
                   check=True, capture_output=True)  # fmt: skip
    return dest


@dataclass
class Machine:
    """The one place where the compose network and the image's file system become this host."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    image: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in CONTAINER_PORTS}
        self.image = build_image_tree(self.root / "image")

    def url(self, service: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.ports[service]}"

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def container_dir(self, container: str, path: str) -> Path:
        folder = self.root / "containers" / container / path.strip("/").replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def mounts(self, container: str, service: dict[str, Any]) -> dict[str, Path]:
        """Container path → folder here: the image's own folders, then the service's volumes."""
        mounts = {IMAGE_PROJECT: self.image}
        mounts.update({path: self.container_dir(container, path) for path in IMAGE_PRIVATE_DIRS})
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts[target] = (ROOT / source).resolve()  # a bind mount of the checkout
            else:
                mounts[target] = self.volume(source)
        # A volume mounted inside another folder (/opt/airflow/logs in AIRFLOW_HOME) is found
        # there too by paths derived at run time, not only by the ones written in the file.
        for target, folder in mounts.items():
            parent = next((p for p in mounts if target.startswith(p + "/")), None)
            if parent and folder != ROOT:
                link = mounts[parent] / target.removeprefix(parent + "/")
                if not link.is_symlink():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if link.exists():
                        link.rmdir()
                    link.symlink_to(folder, target_is_directory=True)
        return mounts

    def listen_env(self, service: str) -> dict[str, str]:
        """What binds a container's servers to its loopback port (Airflow reads its ports from
        the environment); every container also gets free ports for its log servers."""
        env = {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        if service == "airflow-apiserver":
            env.update(AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(self.ports[service]))
        if service == "airflow-scheduler":
            env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(self.ports[service])
        return env

    def listen_args(self, service: str, container: str, argv: list[str]) -> list[str]:
        """Servers taking `--host`/`--port` flags listen on their loopback port; a Celery
        worker is named after its container, as Celery names it after the host in Docker."""
        out = list(argv)
        if service in self.ports:
            for flag, value in (("--host", "127.0.0.1"), ("--port", str(self.ports[service]))):
                if flag in out:
                    out[out.index(flag) + 1] = value
        if out[1:3] == ["celery", "worker"]:
            out += ["--celery-hostname", f"celery@{container}"]
        return out

    def rewrite(self, value: str, mounts: dict[str, Path]) -> str:
        """A value as this host sees it: compose host names to loopback ports, image paths to
        folders. `localhost:PORT` of a service's own healthcheck is left to the caller."""
        for name, port in CONTAINER_PORTS.items():
            value = re.sub(
                rf"(?<=[/@]){re.escape(name)}:{port}\b", f"127.0.0.1:{self.ports[name]}", value
            )
        for target in sorted(mounts, key=len, reverse=True):
            value = re.sub(rf"(?<![\w/]){re.escape(target)}(?=/|$)", str(mounts[target]), value)
        return value


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class Stack:
    """The compose file's services started as processes; `stop()` ends every one of them."""

    def __init__(self, machine: Machine, dotenv: dict[str, str]) -> None:
        self.machine = machine
        self.root = root = machine.root
        self.dotenv = dotenv
        text = interpolate((ROOT / "docker-compose.yml").read_text(), dotenv)
        self.compose = load_compose(text)
        self.services: dict[str, dict[str, Any]] = self.compose["services"]
        self.image_env = {
            key: value
            for key, value in dockerfile_env((ROOT / "Dockerfile").read_text()).items()
            if "$" not in value
        }
        self.processes: dict[str, Process] = {}
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._cleanups: list[Callable[[], None]] = []

    # --- the environment and command of one container --------------------------------------

    def container_env(self, service: str, container: str | None = None) -> dict[str, str]:
        """The image's ENV, then the service's environment, as this host sees them."""
        container = container or service
        mounts = self.machine.mounts(container, self.services[service])
        env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.machine.container_dir(container, "/home")),
            "LANG": "C.UTF-8",
            "HOSTNAME": container,
            "TMPDIR": str(self.machine.container_dir(container, "/tmp")),
            # The image installs the project from WORKDIR; the venv's editable install points
            # at the checkout, so the snapshot comes first.
            "PYTHONPATH": str(self.machine.image),
        }
        env.update({k: self.machine.rewrite(v, mounts) for k, v in self.image_env.items()})
        for key, value in env_of(self.services[service]).items():
            env[key] = self.machine.rewrite(value, mounts)
        env.update(self.machine.listen_env(service))
        return env

    def command(self, service: str, container: str | None = None) -> list[str]:
        spec = self.services[service]
        tokens = spec["command"] if isinstance(spec["command"], list) else spec["command"].split()
        mounts = self.machine.mounts(container or service, spec)
        args = [self.machine.rewrite(str(token), mounts) for token in tokens]
        executable = VENV_BIN / args[0]
        args[0] = str(executable) if executable.exists() else args[0]
        return self.machine.listen_args(service, container or service, args)

    # --- starting and stopping ---------------------------------------------------------------

    def start(
        self,
        service: str,
        *,
        container: str | None = None,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> Process:
        container = container or service
        log_path = self.log_dir / f"{container}.log"
        argv = argv or self.command(service, container)
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        log.info("stack: starting %s: %s", container, " ".join(argv))
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env if env is not None else self.container_env(service, container),
                cwd=self.machine.image,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = Process(container, popen, log_path)
        self.processes[container] = process
        return process

    def run_once(self, service: str, *, timeout: float = 600, **kwargs: Any) -> None:
        """A one-shot service (airflow-init): it must exit 0 (service_completed_successfully)."""
        process = self.start(service, **kwargs)
        try:
            code = process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{process.name} still running after {timeout}s") from None
        assert code == 0, f"{process.name} exited {code}:\n{process.log_tail()}"

    def stop_container(self, container: str) -> None:
        process = self.processes.pop(container, None)
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The group may outlive its leader (task processes, server workers).
        try:
            os.killpg(process.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for container in reversed(list(self.processes)):
            self.stop_container(container)
        for cleanup in reversed(self._cleanups):
            cleanup()

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for process in self.processes.values():
                assert process.alive() or process.popen.returncode == 0, (
                    f"{process.name} exited {process.popen.returncode} while waiting for "
                    f"{what}:\n{process.log_tail()}"
                )
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - not ready yet; the timeout reports it
                last = exc
            else:
                last = None
            assert time.monotonic() < deadline, f"{what} not ready after {timeout}s: {last}"
            time.sleep(1)

    # --- the services that are not this project's image -------------------------------------

    def start_postgres(self) -> None:
        """Debian's PostgreSQL, initialised like the official image does from POSTGRES_*: the
        superuser with its password, the database, then /docker-entrypoint-initdb.d/*.sql."""
        spec = self.services["postgres"]
        env = env_of(spec)
        user, password, database = (
            env["POSTGRES_USER"],
            env["POSTGRES_PASSWORD"],
            env["POSTGRES_DB"],
        )
        base = Path(tempfile.mkdtemp(prefix="stack-postgres-"))
        self._cleanups.append(lambda: shutil.rmtree(base, ignore_errors=True))
        cluster = postgres_cluster.init(
            base, user=user, password=password, port=self.machine.ports["postgres"]
        )
        self.start(
            "postgres",
            argv=cluster.argv,
            env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
        )
        self.wait_until("postgres", cluster.ready)
        cluster.psql("postgres", "-c", f'CREATE DATABASE "{database}"')
        for volume in spec.get("volumes", []):
            source, target = volume.split(":")[:2]
            if target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sql"):
                cluster.psql(database, "-f", str((ROOT / source).resolve()))

    def start_redis(self, service: str) -> None:
        """Debian's redis-server with the service's command (its flags: appendonly, password)."""
        spec = self.services[service]
        flags = [str(t) for t in spec.get("command", ["redis-server"])][1:]
        folder = self.machine.container_dir(service, "/data")
        port = self.machine.ports[service]
        argv = [
            "redis-server",
            *flags,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
        ]
        self.start(service, argv=argv, env={"PATH": os.environ.get("PATH", "")})
        import redis

        password = next((flags[i + 1] for i, f in enumerate(flags) if f == "--requirepass"), None)
        client = redis.Redis(port=port, password=password)
        self.wait_until(service, lambda: bool(client.ping()))

    def start_s3(self) -> None:
        """moto's S3 server standing in for MinIO; then minio-init's buckets (`mc mb`)."""
        port = self.machine.ports["minio"]
        self.start(
            "minio",
            argv=[str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.root)},
        )
        self.wait_until("minio (moto)", lambda: _http_ok(self.machine.url("minio") + "/"))
        init = self.services["minio-init"]
        init_env = env_of(init)
        script = "\n".join(str(line) for line in init["command"])
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.machine.url("minio"),
            aws_access_key_id=init_env["MINIO_ROOT_USER"],
            aws_secret_access_key=init_env["MINIO_ROOT_PASSWORD"],
            region_name="us-east-1",
        )
        for line in script.splitlines():
            if line.strip().startswith("mc mb"):
                for target in re.findall(r'"stack/\$([A-Z_]+)"', line):
                    s3.create_bucket(Bucket=init_env[target])

    # --- healthchecks as written in the file --------------------------------------------------

    def healthy(self, service: str, container: str | None = None) -> bool:
        """Run the service's own healthcheck (its `test`), with `localhost:PORT` meaning the
        container's own port here."""
        container = container or service
        test = self.services[service]["healthcheck"]["test"]
        env = self.container_env(service, container)
        if test[0] == "CMD":
            argv = [self._localhost(service, str(t)) for t in test[1:]]
            mounts = self.machine.mounts(container, self.services[service])
            argv = [self.machine.rewrite(a, mounts) for a in argv]
            argv[0] = str(VENV_BIN / argv[0]) if (VENV_BIN / argv[0]).exists() else argv[0]
            result = subprocess.run(argv, env=env, capture_output=True, timeout=60)
        else:
            shell = self._localhost(service, str(test[1]))
            result = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, timeout=60)
        return result.returncode == 0

    def _localhost(self, service: str, value: str) -> str:
        if service not in CONTAINER_PORTS:
            return value
        return re.sub(
            rf"localhost:{CONTAINER_PORTS[service]}\b",
            f"127.0.0.1:{self.machine.ports[service]}",
            value,
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False
