"""Fixtures and helpers live in helpers_cli.py (a unique module name: several conftest.py files cannot share one)."""

import signal

pytest_plugins = ["tmp_cleanup"]  # removes module fixtures' temporary folders when their module ends

from helpers_cli import *  # noqa: F401,F403  (fixtures are registered from this namespace)

# A shell without job control starts background commands (`make test &` in a script) with Ctrl-C ignored, and the
# processes the tests start would inherit that: the tests that send them SIGINT need it handled as it is for a user.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
