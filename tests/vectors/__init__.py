"""Test vectors (tests/vectors/*.json) and their generators."""
