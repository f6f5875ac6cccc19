"""The hero API: the reference Hero/Team API on FastAPI and herorepo."""
