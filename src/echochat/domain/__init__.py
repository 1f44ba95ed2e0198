"""Pure domain code: no I/O, no frameworks.

Everything else may import it; it imports nothing of ours.
"""
