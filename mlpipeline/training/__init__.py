"""Training stage: feature pipeline, split, candidates, evaluation, registry."""
