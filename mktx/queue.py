"""The one way the apps queue a django-q task, so that a down broker never fails the request that queues.

Everything queued here has a second way to happen (a minute sweep, the next save, or work done inline by the
caller), so a broker that refuses or does not answer makes `task_enqueue` log and answer False instead of raising.
A Redis broker is reached through a client of `mktx/redis.py` (short timeouts, no retries, the circuit breaker),
not django-q's own client, which has redis-py's default of waiting forever on a silent server.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.db import DatabaseError

from mktx.redis import guarded, redis_client

logger = logging.getLogger("mktx.queue")


@functools.cache
def _producer(redis_url: str | None) -> Any:
    """One broker per process for queueing (django-q would otherwise build one per task)."""
    from django_q.brokers import get_broker

    broker = get_broker()
    if redis_url:
        broker.connection = redis_client(redis_url)
    return broker


def _broker_redis_url() -> str | None:
    """The Redis URL of django-q's broker, or None when the broker is not Redis (the ORM broker here)."""
    from django_q.conf import Conf

    if Conf.BROKER_CLASS or Conf.IRON_MQ or Conf.SQS or Conf.ORM or Conf.MONGO:  # get_broker's order
        return None
    return Conf.REDIS if isinstance(Conf.REDIS, str) else None


def task_enqueue(func: str, *args: Any, task_name: str) -> bool:
    """Queue `func(*args)`; False (logged) when the broker is down, after at most the Redis timeout."""
    from django_q.conf import Conf
    from django_q.tasks import async_task

    if Conf.SYNC:  # tests and MKTX_TASKS_SYNC: the task runs here and now, nothing to guard
        async_task(func, *args, task_name=task_name)
        return True
    url = _broker_redis_url()

    def put() -> bool:
        async_task(func, *args, task_name=task_name, broker=_producer(url))
        return True

    if url:
        queued = guarded(url, f"queue {task_name}", False, put)
    else:
        try:
            queued = put()
        except DatabaseError:  # the ORM broker is the database: its outage is answered elsewhere (503)
            queued = False
    if not queued:
        logger.warning("could not queue %s (%s): the broker is down; it will be done another way", task_name, func)
    return queued
