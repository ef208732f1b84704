"""Workflows: jobs that drive several runs end to end (the `experiment` grid), above `evaluate/`."""
