"""Benchmarks that print figures; never imported on the daemon's path."""
