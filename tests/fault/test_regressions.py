"""Regression tests for bugs the fault harness found, each named after what it was.

A bug in a layer the harness does not own is pinned here first as a failing test
(``xfail(strict=True)``) until it is fixed in that layer; then the mark goes.
"""
