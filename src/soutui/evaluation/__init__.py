"""Evaluation: metrics as pure functions, and the protocols that apply them honestly."""
