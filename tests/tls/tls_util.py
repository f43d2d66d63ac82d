"""Shared by the Python tests of the demo's HTTPS side (tests/tls/*.py): demo_util from
tests/web, the certificate fixtures, a client context trusting the test CA, and a demo
started with HTTPS on an ephemeral port."""
import importlib.util
import os
import resource
import shutil
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web"))
# re-exported for the tests
from demo_util import (BUILD, SRC, STATIC, check, finish, log_text, rss_kb,  # noqa: E402,F401
                       start, stop, tls_fixtures)


def client_context(fixtures):
    """Verifies the server against the test CA only (and the host name)."""
    ctx = ssl.create_default_context(cafile=os.path.join(fixtures, "ca.pem"))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def start_https(fixtures, **kw):
    """The demo with HTTPS on an ephemeral port: (proc, http_port, https_port)."""
    proc, port = start(https=fixtures, **kw)
    return proc, port, proc.https_port


def raise_nofile():
    """The soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(sorted_values, p):
    if not sorted_values:
        return float("inf")
    k = min(len(sorted_values) - 1, max(0, int(len(sorted_values) * p / 100.0 + 0.5) - 1))
    return sorted_values[k]


def require(programs=(), modules=()):
    """Exit 77 (ctest: skipped) when a peer this test drives is not installed."""
    for p in programs:
        if shutil.which(p) is None:
            print(f"skipped: {p} not installed")
            raise SystemExit(77)
    for m in modules:
        if importlib.util.find_spec(m) is None:
            print(f"skipped: Python's {m} not installed")
            raise SystemExit(77)
