"""Benchmarks of onionchat against a reference measured in the same run (see bench/README.md)."""
