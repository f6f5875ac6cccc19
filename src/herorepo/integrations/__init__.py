"""Integrations with web frameworks; each is a module of its own, imported only when you use it.

* :mod:`herorepo.integrations.fastapi`: lifespan, request-scoped dependencies and error handlers
  (``pip install "herorepo[fastapi]"``).
"""
