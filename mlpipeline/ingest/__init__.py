"""Ingestion stage: landed files become raw revisions (revisions), registered per batch id
(batches), checked row by row (validation_rules); late rows wait (pending_rows) and corrections
replace a published revision (supersede)."""
