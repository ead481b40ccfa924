"""Batch ML pipeline for card-payment fraud: the library the Airflow DAGs call.

This package never imports Airflow, so every stage runs and tests without a scheduler.
"""
