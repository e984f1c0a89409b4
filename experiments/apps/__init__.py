"""Command-line apps (Hydra): splitbench-replay, splitbench-study, splitbench-report.

Each app module has ``run(cfg) -> result`` (callable from tests with a config made by
``hydra.compose``) and ``main()`` (the console script).
"""
