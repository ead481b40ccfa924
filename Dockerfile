# One image for every project service of docker-compose.yml: the Airflow components, the
# MLflow server and the scoring API. Code changes reach the stack by rebuilding it:
#   docker compose build && docker compose up -d
# An exact tag, like every image of docker-compose.yml: a rebuild gets the same interpreter.
FROM python:3.11.14-slim-bookworm

# GIT_COMMIT tags the models trained from this image (mlpipeline.training.train.git_commit): the image
# carries no .git. `GIT_COMMIT=$(git rev-parse HEAD) docker compose build`.
ARG GIT_COMMIT=unknown

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    GIT_COMMIT=${GIT_COMMIT} \
    DBT_PROJECT_DIR=/opt/mlpipeline/dbt_project \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    DO_NOT_TRACK=1

# The official Airflow image's uid (50000, group 0), so volumes made by either stay readable.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow

# Dependencies first: this layer is rebuilt only when a pin changes. requirements-stack.txt is
# exported from uv.lock (`make requirements`): the runtime and the stack group, no test or dev
# tools.
COPY requirements-stack.txt /tmp/requirements/
RUN pip install uv==0.13.9 \
    && uv pip install --system --no-cache -r /tmp/requirements/requirements-stack.txt

# The project's files live at /opt/mlpipeline; the package installs like any wheel (its conf/
# and scripts travel with it) and finds the dbt project by DBT_PROJECT_DIR.
WORKDIR /opt/mlpipeline
COPY pyproject.toml ./
COPY mlpipeline/ mlpipeline/
COPY dags/ dags/
COPY plugins/ plugins/
COPY dbt_project/ dbt_project/
COPY docker/ docker/
# The manifest the nightly's Cosmos task group is rendered from ships with the dbt code it was
# parsed from; airflow-init re-checks it on every start.
# The Data Docs pages' styles and scripts come from the npm registry here, not from CDNs at
# view time; DuckDB's extensions from their pinned packages, not from DuckDB's site at run time.
RUN uv pip install --system --no-cache --no-deps . \
    && mlpipeline dbt-manifest \
    && mlpipeline data-docs-assets \
    && mlpipeline duckdb-extensions \
    && mkdir -p /data/mlpipeline /opt/airflow/logs \
    && chown -R airflow:0 /opt/mlpipeline /opt/airflow /data/mlpipeline

USER airflow
EXPOSE 8080 8000 5000
