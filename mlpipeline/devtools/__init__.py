"""Local tooling (demo, data generator, local Airflow and Redis); never imported by stages."""
