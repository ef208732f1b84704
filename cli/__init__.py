"""Thin Click front end: each command parses options, resolves the config, saves it, calls the library."""
