"""Settings for the benchmarks: the project's own, plus a URLconf with the reference views next to the real ones."""

from mktx.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
