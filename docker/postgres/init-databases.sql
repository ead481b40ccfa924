-- Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
-- POSTGRES_DB (airflow) is Airflow's metadata DB; this adds MLflow's backend store and the
-- warehouse's DuckLake catalog beside it, owned by the same user. MLflow creates its own tables
-- when the server starts, DuckLake when airflow-init sets the warehouse up.
CREATE DATABASE mlflow;
CREATE DATABASE warehouse;
