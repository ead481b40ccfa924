"""Feature stage: dbt builds and the snapshot export."""
