"""Example applications built on herorepo, run by the test suite."""
