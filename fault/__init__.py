"""Fault harness: histories of client operations and the checkers that judge them.

fault.history (the format), fault.linearizability (per-key register linearizability),
fault.checks (lost writes, duplicates, divergent final states, summary).
"""
