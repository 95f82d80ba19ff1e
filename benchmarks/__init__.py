"""fattr's benchmarks: fattr against Captum and against the floor, measured side by side.

Run ``python -m benchmarks.run --quick`` (see ``benchmarks/README.md``).
"""
