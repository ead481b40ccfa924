"""The one module Airflow's plugins loader imports: it registers the AirflowPlugin classes found
here (each defined beside what it plugs in, in the `mlpipeline_airflow` package)."""

from mlpipeline_airflow.processing_day import ProcessingDayPlugin
from mlpipeline_airflow.ui_links import UiLinksPlugin
from mlpipeline_airflow.warehouse_access import WarehouseAccessPlugin

__all__ = ["ProcessingDayPlugin", "UiLinksPlugin", "WarehouseAccessPlugin"]
