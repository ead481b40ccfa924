"""Reading docker-compose.yml and the Dockerfile the way Docker does, for the tests that check
them (test_compose) and the one that runs them (test_stack)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR; $$ is a literal $.
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def load_compose(text: str) -> dict[str, Any]:
    """The parsed file, YAML anchors resolved into independent copies (JSON round trip), so a
    negative test that edits one service does not edit every service sharing an anchor."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution over the file's text, with `env` as the .env file."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg, current = match.group("op"), match.group("arg"), env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise ValueError(f"${{{name}}} is required: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(value, text)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whichever of Compose's two forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, parts = [], []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        logical.append(" ".join(parts))
        parts = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        yield keyword.upper(), args.strip()


def dockerfile_env(text: str) -> dict[str, str]:
    """What the image's ENV instructions set (build args left as they are written)."""
    values: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(text):
        if keyword == "ENV":
            for token in shlex.split(args):
                if "=" in token:
                    name, _, value = token.partition("=")
                    values[name] = value
    return values
