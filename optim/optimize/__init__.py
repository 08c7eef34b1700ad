"""Structured pruning, PTQ, QAT and distillation."""
