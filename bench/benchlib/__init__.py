"""The parts of `make bench` (bench/run.py), shared with `make bench-calls` (bench/calls.py)."""
