"""The production stack (docker-compose.yml + Dockerfile), checked without a Docker engine.

The file is validated against the Compose JSON schema (tests/schemas/compose_spec.json, see
tests/schemas/README.md) and against the code it runs: references resolve, images are pinned,
every variable the code reads reaches the services that run it, every `mlpipeline` command
exists in the CLI, the Airflow services agree on their shared secrets and databases.

Each check is a small function from the parsed files to a list of problems; the real files must
give none, and each negative test breaks a copy in memory and expects the check to name it.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlpipeline.cli import build_parser
from mlpipeline.core.config import Settings
from mlpipeline.devtools.local_airflow import airflow_env, cli_json
from tests.compose_file import dockerfile_env, dockerfile_instructions, env_of, load_compose

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose_spec.json"
# Where the Dockerfile puts the checkout inside the image.
IMAGE_PROJECT_DIR = "/opt/mlpipeline"
# Code whose environment reads must be satisfied by the stack.
CODE_GLOBS = ("mlpipeline/**/*.py", "plugins/**/*.py", "dags/**/*.py")
# The services that run project code: each must get every variable the code reads.
PROJECT_SERVICES = (
    "airflow-init",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "scoring-api",
)
# Variables the code reads that the stack deliberately leaves unset, and why.
LAPTOP_ONLY = {
    # the analysts' dev lake and how it reads production (`dbt build`, `mlpipeline dev-db` on
    # their laptop; the stack makes the read-only role and S3 key they read it with)
    "DEV_WAREHOUSE_CATALOG",
    "DEV_WAREHOUSE_DATA_PATH",
    "WAREHOUSE_READER_CATALOG",
    # optional overrides of files the image ships (conf/candidates.yaml, conf/expectations/)
    "MLPIPELINE_CANDIDATES",
    "MLPIPELINE_EXPECTATIONS_DIR",
    # alternative to AIRFLOW_API_USERNAME / AIRFLOW_API_PASSWORD, which the stack sets
    "AIRFLOW_API_TOKEN",
    # fallback operator name when getpass finds none; the image runs as user `airflow`
    "USER",
    # set for each task by the plugin's listener (mlpipeline_airflow.warehouse_access), not deployed
    "MLPIPELINE_WAREHOUSE_ACCESS",
}
# Settings every Airflow component must share: one metadata DB, one broker, one set of secrets.
SHARED_AIRFLOW_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
)
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
# Published host ports, as the README documents them.
HOST_PORTS = {8080, 5000, 9000, 9001, 8000, 6380, 5432}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)")
EXACT_TAG = re.compile(r"^(\d+\.\d+|RELEASE\.)")


# --- reading the files --------------------------------------------------------------------------


def env_example_names(text: str) -> set[str]:
    return set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=", text, flags=re.MULTILINE))


def _is_environ(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "environ"
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _is_getenv(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "getenv"
    if isinstance(node, ast.Attribute):
        return node.attr == "getenv" or (node.attr == "get" and _is_environ(node.value))
    return False


def env_reads(source: str) -> set[str]:
    """Names a module reads with os.environ[...], os.environ.get(...) or os.getenv(...), given
    as a string literal or a module-level string constant, directly or through a helper of the
    same module that passes one of its parameters on (`_path("DUCKDB_PATH", ...)`), and the
    settings fields' variables (`Field(..., validation_alias="REDIS_URL")`)."""
    tree = ast.parse(source)
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }

    def name(arg: ast.AST) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        return constants.get(arg.id) if isinstance(arg, ast.Name) else None

    def read_argument(node: ast.AST) -> ast.AST | None:
        """The name argument of an environment read, or None when `node` is not one."""
        if isinstance(node, ast.Call) and node.args and _is_getenv(node.func):
            return node.args[0]
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            return node.slice if _is_environ(node.value) else None
        return None

    helpers: dict[str, int] = {}  # function name -> index of the parameter it reads
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [arg.arg for arg in function.args.args]
            for node in ast.walk(function):
                arg = read_argument(node)
                if isinstance(arg, ast.Name) and arg.id in params:
                    helpers[function.name] = params.index(arg.id)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found |= {name(k.value) for k in node.keywords if k.arg == "validation_alias"}
        arg = read_argument(node)
        if arg is not None:
            found.add(name(arg))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            index = helpers.get(node.func.id)
            if index is not None and len(node.args) > index:
                found.add(name(node.args[index]))
    return found - {None}


def code_env_vars(root: Path = ROOT) -> set[str]:
    return {
        var
        for pattern in CODE_GLOBS
        for path in sorted(root.glob(pattern))
        for var in env_reads(path.read_text())
    }


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _command_tokens(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else shlex.split(value)


# --- checks: each returns the problems it finds --------------------------------------------------


def schema_problems(compose: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    return [
        f"schema: {'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]


def _named_volume(volume: str | dict[str, Any]) -> str | None:
    """The named volume a service mount uses; None for bind mounts and anonymous volumes."""
    if isinstance(volume, dict):
        source = volume.get("source") if volume.get("type", "volume") == "volume" else None
    else:
        source = volume.split(":")[0] if ":" in volume else None
    return source if source and not source.startswith((".", "/", "~", "$")) else None


def reference_problems(compose: dict[str, Any]) -> list[str]:
    """depends_on / volumes_from name services; healthy-conditions have a healthcheck; named
    volumes are declared at the top level."""
    services = compose.get("services", {})
    declared_volumes = set(compose.get("volumes") or {})
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        conditions = (
            {target: "service_started" for target in depends}
            if isinstance(depends, list)
            else {target: spec.get("condition") for target, spec in depends.items()}
        )
        for target, condition in conditions.items():
            if target not in services:
                problems.append(f"{name}: depends_on unknown service {target!r}")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target!r} to be healthy, no healthcheck")
        for source in service.get("volumes_from") or []:
            target = source.split(":")[0]
            if target.startswith("container"):
                continue
            if target not in services:
                problems.append(f"{name}: volumes_from unknown service {target!r}")
        for volume in service.get("volumes") or []:
            source = _named_volume(volume)
            if source and source not in declared_volumes:
                problems.append(f"{name}: volume {source!r} is not declared under volumes:")
    return problems


def variable_problems(compose: dict[str, Any], env_example: str) -> list[str]:
    """Every ${VAR} Compose interpolates is listed in .env.example ($$ is a literal $)."""
    documented = env_example_names(env_example)
    used = set()
    for text in _strings(compose):
        for braced, bare in INTERPOLATION.findall(text.replace("$$", "")):
            used.add(braced or bare)
    missing = sorted(used - documented)
    return [f"${{{var}}} is used but not listed in .env.example" for var in missing]


def env_problems(compose: dict[str, Any], code_vars: set[str], image_env: set[str]) -> list[str]:
    """Each project service gets every variable the code reads (from its environment, or from
    the image's ENV when it is built from the Dockerfile), unless it is laptop-only."""
    services = compose.get("services", {})
    required = code_vars - LAPTOP_ONLY
    problems = []
    for name in PROJECT_SERVICES:
        if name not in services:
            problems.append(f"{name}: service is missing")
            continue
        env = env_of(services[name])
        available = set(env) | (image_env if "build" in services[name] else set())
        problems += [f"{name}: {var} is not set" for var in sorted(required - available)]
        empty = sorted(var for var in required & set(env) if not env[var])
        problems += [f"{name}: {var} is empty" for var in empty]
    return problems


def image_problems(compose: dict[str, Any]) -> list[str]:
    """Services not built here pin an exact tag (major.minor[.patch] or a RELEASE stamp)."""
    problems = []
    for name, service in compose.get("services", {}).items():
        if "build" in service:
            continue
        image = service.get("image")
        if not image:
            problems.append(f"{name}: neither build nor image")
            continue
        reference = image.split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        if not repository or "/" in tag:
            problems.append(f"{name}: image {image!r} has no tag")
        elif not EXACT_TAG.match(tag):
            problems.append(f"{name}: image {image!r} is not pinned to an exact version")
    return problems


def dockerfile_problems(dockerfile: str, root: Path = ROOT) -> list[str]:
    """Every COPY source exists in the build context; the base image is an exact release
    (python:3.11-slim follows every patch release, python:3.11.14-slim does not)."""
    problems = []
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "FROM":
            tag = args.split()[0].split("@", 1)[0].rpartition(":")[2]
            if not re.match(r"^\d+\.\d+\.\d+", tag):
                problems.append(f"Dockerfile: base image {args.split()[0]!r} is not an exact tag")
            continue
        if keyword not in {"COPY", "ADD"}:
            continue
        tokens = shlex.split(args)
        if any(token.startswith("--from") for token in tokens):
            continue  # copies from another stage, not from the build context
        sources = [token for token in tokens if not token.startswith("--")][:-1]
        for source in sources:
            if not (root / source).exists():
                problems.append(f"Dockerfile: {keyword} source {source!r} does not exist")
    return problems


def _cli_problems(where: str, tokens: list[str]) -> list[str]:
    problems = []
    for index, token in enumerate(tokens):
        if token == "mlpipeline":
            args = []
            for arg in tokens[index + 1 :]:
                if arg in {"&&", "||", ";", "|"}:
                    break
                args.append(arg)
            stderr = io.StringIO()
            try:
                with contextlib.redirect_stderr(stderr):
                    build_parser().parse_args(args)
            except SystemExit:
                message = stderr.getvalue().strip().splitlines()[-1:] or ["rejected"]
                problems.append(f"{where}: `mlpipeline {' '.join(args)}`: {message[0]}")
        elif token.startswith(IMAGE_PROJECT_DIR + "/"):
            relative = token.removeprefix(IMAGE_PROJECT_DIR + "/")
            if not (ROOT / relative).exists():
                problems.append(f"{where}: {token} is not in the repository ({relative})")
    return problems


def command_problems(compose: dict[str, Any], dockerfile: str) -> list[str]:
    """Every `mlpipeline ...` a service or the Dockerfile runs parses with the real CLI, and
    every project file a command names exists."""
    problems = []
    for name, service in compose.get("services", {}).items():
        for field in ("entrypoint", "command"):
            problems += _cli_problems(f"{name}.{field}", _command_tokens(service.get(field)))
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD-SHELL":
            test = " ".join(test[1:])
        problems += _cli_problems(f"{name}.healthcheck", _command_tokens(test))
    for keyword, args in dockerfile_instructions(dockerfile):
        if keyword == "RUN":
            problems += _cli_problems("Dockerfile RUN", shlex.split(args))
    return problems


def airflow_shared_problems(compose: dict[str, Any]) -> list[str]:
    """The Airflow components agree on every shared setting, and each has all of them."""
    services = compose.get("services", {})
    problems = []
    for setting in SHARED_AIRFLOW_SETTINGS:
        values = {}
        for name in AIRFLOW_SERVICES:
            env = env_of(services.get(name, {}))
            if setting not in env:
                problems.append(f"{name}: {setting} is not set")
            else:
                values[name] = env[setting]
        if len(set(values.values())) > 1:
            problems.append(f"{setting} differs between Airflow services: {sorted(values.items())}")
    return problems


def port_problems(compose: dict[str, Any]) -> list[str]:
    published = set()
    for service in compose.get("services", {}).values():
        for port in service.get("ports") or []:
            spec = str(port.get("published", "")) if isinstance(port, dict) else str(port)
            published.add(int(spec.split(":")[-2] if ":" in spec else spec))
    if published != HOST_PORTS:
        return [f"published ports {sorted(published)} differ from {sorted(HOST_PORTS)}"]
    return []


# --- the real files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def env_example() -> str:
    return (ROOT / ".env.example").read_text()


@pytest.fixture(scope="module")
def code_vars() -> set[str]:
    return code_env_vars()


@pytest.mark.unit
def test_compose_file_matches_the_compose_schema(compose: dict[str, Any]) -> None:
    assert schema_problems(compose) == []


@pytest.mark.unit
def test_references_resolve(compose: dict[str, Any]) -> None:
    assert reference_problems(compose) == []


@pytest.mark.unit
def test_every_interpolated_variable_is_in_env_example(
    compose: dict[str, Any], env_example: str
) -> None:
    assert variable_problems(compose, env_example) == []


@pytest.mark.unit
def test_env_var_scanner_finds_reads_only() -> None:
    source = (
        "import os\nfrom os import getenv\nNAME = 'FROM_CONSTANT'\n"
        "os.environ.get('A')\nos.getenv('B', 'x')\nos.environ['C']\ngetenv('D')\n"
        "os.environ.get(NAME)\nos.environ['WRITTEN'] = '1'\nos.environ.get(unknown)\n"
        "def _path(var, default):\n    return os.environ.get(var) or default\n"
        "_path('THROUGH_HELPER', None)\n"
        "class S(BaseSettings):\n    url: str = Field('', validation_alias='SETTING')\n"
    )
    assert env_reads(source) == {
        "A",
        "B",
        "C",
        "D",
        "FROM_CONSTANT",
        "THROUGH_HELPER",
        "SETTING",
    }


@pytest.mark.unit
def test_project_services_get_every_variable_the_code_reads(
    compose: dict[str, Any], dockerfile: str, code_vars: set[str]
) -> None:
    # The scan sees the settings the code is known to read (guards against a silent scanner).
    assert {"REDIS_URL", "DUCKDB_PATH", "MLFLOW_TRACKING_URI", "MLPIPELINE_BUCKET"} <= code_vars
    assert env_problems(compose, code_vars, set(dockerfile_env(dockerfile))) == []


@pytest.mark.unit
def test_laptop_only_allowlist_names_variables_the_code_still_reads(code_vars: set[str]) -> None:
    assert LAPTOP_ONLY - code_vars == set()


@pytest.mark.unit
def test_images_are_pinned(compose: dict[str, Any]) -> None:
    assert image_problems(compose) == []


@pytest.mark.unit
def test_dockerfile_copies_exist_and_local_state_stays_out(dockerfile: str) -> None:
    assert dockerfile_problems(dockerfile) == []
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "data/"} <= ignored


@pytest.mark.unit
def test_commands_exist(compose: dict[str, Any], dockerfile: str) -> None:
    assert command_problems(compose, dockerfile) == []


@pytest.mark.unit
def test_airflow_services_share_settings(compose: dict[str, Any]) -> None:
    assert airflow_shared_problems(compose) == []


@pytest.mark.unit
def test_published_ports_are_the_documented_ones(compose: dict[str, Any]) -> None:
    assert port_problems(compose) == []


# --- each check fails on a broken file -----------------------------------------------------------


def _set_env(service: str, key: str, value: str | None) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        env = compose["services"][service]["environment"]
        if value is None:
            env.pop(key)
        else:
            env[key] = value

    return mutate


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        target = compose
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(compose: dict[str, Any]) -> None:
        target = compose
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "unknown service key",
        _set(("services", "minio", "depend_on"), ["minio-init"]),
        "schema",
        "depend_on",
    ),
    ("undeclared volume", _delete(("volumes", "airflow-logs")), "references", "airflow-logs"),
    (
        "depends on a missing service",
        _set(("services", "scoring-api", "depends_on", "nosuch"), {"condition": "service_started"}),
        "references",
        "nosuch",
    ),
    (
        "waits for health that is never reported",
        _delete(("services", "mlflow", "healthcheck")),
        "references",
        "'mlflow' to be healthy",
    ),
    (
        "undocumented variable",
        _set_env("scoring-api", "EXTRA", "${NOT_IN_ENV_EXAMPLE:-x}"),
        "variables",
        "NOT_IN_ENV_EXAMPLE",
    ),
    ("REDIS_URL dropped", _set_env("airflow-worker", "REDIS_URL", None), "env", "REDIS_URL"),
    (
        "DUCKDB_PATH empty",
        _set_env("scoring-api", "DUCKDB_PATH", ""),
        "env",
        "scoring-api: DUCKDB_PATH is empty",
    ),
    ("scoring API service gone", _delete(("services", "scoring-api")), "env", "scoring-api"),
    ("latest tag", _set(("services", "redis-celery", "image"), "redis:latest"), "images", "latest"),
    ("no tag", _set(("services", "minio", "image"), "minio/minio"), "images", "no tag"),
    ("major-only tag", _set(("services", "postgres", "image"), "postgres:16"), "images", "exact"),
    (
        "unknown mlpipeline subcommand",
        _set(("services", "scoring-api", "command"), ["mlpipeline", "serv"]),
        "commands",
        "serv",
    ),
    (
        "unknown mlpipeline flag",
        _set(("services", "scoring-api", "command"), "mlpipeline serve --prot 8000"),
        "commands",
        "--prot",
    ),
    (
        "script missing from the repository",
        _set(("services", "airflow-init", "command"), ["python", "/opt/mlpipeline/docker/gone.py"]),
        "commands",
        "docker/gone.py",
    ),
    (
        "JWT secret differs",
        _set_env("airflow-scheduler", "AIRFLOW__API_AUTH__JWT_SECRET", "other"),
        "airflow",
        "AIRFLOW__API_AUTH__JWT_SECRET differs",
    ),
    (
        "broker missing",
        _set_env("airflow-triggerer", "AIRFLOW__CELERY__BROKER_URL", None),
        "airflow",
        "airflow-triggerer: AIRFLOW__CELERY__BROKER_URL is not set",
    ),
    ("port moved", _set(("services", "mlflow", "ports"), ["5001:5000"]), "ports", "5001"),
]


@pytest.mark.parametrize(
    ("mutate", "check", "expected"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
@pytest.mark.unit
def test_checks_report_a_broken_compose_file(
    compose: dict[str, Any],
    dockerfile: str,
    env_example: str,
    code_vars: set[str],
    mutate: Callable[[dict[str, Any]], None],
    check: str,
    expected: str,
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    checks: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "schema": schema_problems,
        "references": reference_problems,
        "variables": lambda c: variable_problems(c, env_example),
        "env": lambda c: env_problems(c, code_vars, set(dockerfile_env(dockerfile))),
        "images": image_problems,
        "commands": lambda c: command_problems(c, dockerfile),
        "airflow": airflow_shared_problems,
        "ports": port_problems,
    }
    problems = checks[check](broken)
    assert any(expected in problem for problem in problems), problems
    assert checks[check](compose) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("COPY dags/ dags/", "COPY dag/ dags/", "'dag/'"),
        ("&& mlpipeline dbt-manifest", "&& mlpipeline dbt-manifst", "dbt-manifst"),
        ("FROM python:3.11.14-slim-bookworm", "FROM python:3.11-slim-bookworm", "exact tag"),
    ],
    ids=["COPY of a missing path", "unknown mlpipeline subcommand in RUN", "floating base tag"],
)
@pytest.mark.unit
def test_checks_report_a_broken_dockerfile(
    compose: dict[str, Any], dockerfile: str, old: str, new: str, expected: str
) -> None:
    assert old in dockerfile
    broken = dockerfile.replace(old, new)
    problems = dockerfile_problems(broken) + command_problems(compose, broken)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.unit
def test_env_example_gaps_are_reported(compose: dict[str, Any], env_example: str) -> None:
    trimmed = "\n".join(
        line for line in env_example.splitlines() if not line.startswith("POSTGRES_PASSWORD=")
    )
    assert variable_problems(compose, trimmed) == [
        "${POSTGRES_PASSWORD} is used but not listed in .env.example"
    ]


@pytest.mark.integration
def test_the_init_service_creates_the_pool_and_the_smtp_connection_idempotently(
    tmp_path: Path,
) -> None:
    """docker/airflow_init.py as airflow-init runs it (on SQLite instead of Postgres): twice,
    the second time with a changed SMTP server, which must replace the connection."""
    env = airflow_env(Settings.under(tmp_path))
    script = [sys.executable, str(ROOT / "docker" / "airflow_init.py")]

    def connection() -> dict[str, Any]:
        return cli_json(["connections", "get", "smtp_default"], env)[0]

    smtp = {"SMTP_HOST": "smtp.example.com", "SMTP_USER": "alerts", "SMTP_PASSWORD": "s3cret"}
    done = subprocess.run(
        script,
        env={**env, **smtp, "SMTP_MAIL_FROM": "fraud@example.com"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "s3cret" not in done.stdout + done.stderr  # setup logs never show the password
    first = connection()
    assert (first["conn_type"], first["host"], first["port"]) == ("smtp", "smtp.example.com", "587")
    assert first["login"] == "alerts"
    # The CLI prints extra values as text.
    assert first["extra_dejson"] == {"disable_ssl": "True", "from_email": "fraud@example.com"}

    subprocess.run(script, env={**env, **smtp, "SMTP_PORT": "465"}, check=True)
    second = connection()
    assert second["port"] == "465" and second["extra_dejson"] == {"disable_ssl": "False"}

    assert cli_json(["pools", "get", "warehouse"], env)[0]["slots"] == "1"
