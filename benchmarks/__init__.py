"""The benchmark suite of issue 6; run it with ``nox -s bench`` (see README.md here)."""
