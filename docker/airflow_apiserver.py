"""airflow-apiserver: write the login from .env for SimpleAuthManager, then run the API server.

Left alone, SimpleAuthManager generates a password on first start and prints it in the log.
Writing its password file from AIRFLOW_API_USERNAME / AIRFLOW_API_PASSWORD (the account
operators and `mlpipeline batches release` log in with) makes the login the one in .env, and a
changed password takes effect on the next restart.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def write_password_file() -> Path:
    user = os.environ.get("AIRFLOW_API_USERNAME")
    password = os.environ.get("AIRFLOW_API_PASSWORD")
    if not user or not password:
        sys.exit(
            "airflow-apiserver: AIRFLOW_API_USERNAME and AIRFLOW_API_PASSWORD must be set; "
            "set AIRFLOW_ADMIN_USERNAME / AIRFLOW_ADMIN_PASSWORD in .env (see .env.example)"
        )
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps({user: password}) + "\n")
    return path


def main() -> None:
    write_password_file()
    os.execvp("airflow", ["airflow", "api-server", *sys.argv[1:]])


if __name__ == "__main__":
    main()
