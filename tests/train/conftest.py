"""Fixtures and helpers live in helpers_train.py (a unique module name: several conftest.py files cannot share one)."""

from helpers_train import *  # noqa: F401,F403  (fixtures are registered from this namespace)
