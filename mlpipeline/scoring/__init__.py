"""Scoring stage: the batch score table, its readers and the online scoring API."""
