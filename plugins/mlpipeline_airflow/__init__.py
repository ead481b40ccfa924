"""The pipeline's Airflow glue: timetable, stage runner, assets, alerts, UI links, warehouse access.

One uniquely named package on the plugins folder's path (`from mlpipeline_airflow.alerts import
...`), so that no module clashes with another top-level `alerts` or `ui_links`. Airflow registers
its plugin classes through `plugins/mlpipeline_airflow_plugins.py`; the package itself is in the
folder's `.airflowignore`, since the plugins loader would import each file of it a second time
under its bare name.
"""
