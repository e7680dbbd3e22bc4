"""The test suite's settings (pytest.ini): production's, DEBUG off, plus what only a test run may use."""

from mktx.settings import *  # noqa: F403

# The suite hashes a password for nearly every test user. MD5 would make a stolen production hash trivial to crack,
# so production settings refuse it (MKTX_FAST_PASSWORD_HASHER needs DEBUG); only this module sets it with DEBUG off.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
