"""The demo: a synthetic LILA-layout dataset and the budgeted demo run on it."""
