"""`python -m mlpipeline.cli`: the `mlpipeline` command."""

from mlpipeline.cli import main

main()
