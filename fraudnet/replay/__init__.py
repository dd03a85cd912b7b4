"""Replays: transaction generator, scenario files, simulation harness."""
