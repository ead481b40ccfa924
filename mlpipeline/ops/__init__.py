"""Operations: alerts, reports, backfill ranges and retention."""
