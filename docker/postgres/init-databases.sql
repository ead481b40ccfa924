-- Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
-- POSTGRES_DB (airflow) is Airflow's metadata DB; this adds MLflow's backend store beside it,
-- owned by the same user. MLflow creates its own tables when the server starts.
CREATE DATABASE mlflow;
