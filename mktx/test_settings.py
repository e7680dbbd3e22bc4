"""The test suite's settings (pytest.ini): production's, DEBUG off, plus what only a test run may use."""

import os
from urllib.parse import urlsplit, urlunsplit

from mktx.settings import *  # noqa: F403
from mktx.settings import CACHES, Q_CLUSTER, REDIS_URL

# The suite hashes a password for nearly every test user. MD5 would make a stolen production hash trivial to crack,
# so production settings refuse it (MKTX_FAST_PASSWORD_HASHER needs DEBUG); only this module sets it with DEBUG off.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Under pytest-xdist (`make test` runs the suite on every core, at most four workers) each worker gets a Redis
# database of its own: the cache's clear() between tests flushes the database it is on, and rate limits and leases
# live there too. The first worker keeps REDIS_URL's; the others take 11, 10 and 9, which no benchmark uses
# (bench/ takes 12-14, CI 15). The environment follows, for the tests that start processes or read REDIS_URL.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_parts = urlsplit(REDIS_URL)
if _WORKER.startswith("gw") and _WORKER[2:] != "0" and _parts.scheme in ("redis", "rediss"):
    _own = int(_parts.path.strip("/") or 0)
    _db = [db for db in (11, 10, 9, 8) if db != _own][int(_WORKER[2:]) - 1]
    REDIS_URL = urlunsplit(_parts._replace(path=f"/{_db}"))
    os.environ["REDIS_URL"] = REDIS_URL
    CACHES["default"]["LOCATION"] = REDIS_URL
    Q_CLUSTER["redis"] = REDIS_URL
