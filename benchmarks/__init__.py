"""The benchmark suite: herorepo beside raw drivers, Core and SQLModel; ``nox -s bench``."""
