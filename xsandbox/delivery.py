"""How the sandbox delivers webhook events, as X does: signed POSTs a moment after what caused them (the echoes of
API sends in the background, the control surface's events at once), and when the answer is not a 2xx within
`delivery_timeout` (3 s), three more tries after 1 s, 4 s and 16 s (`retry_delays`). Every attempt is listed in
`GET /_sandbox/deliveries` with its delivery id and number; `POST /_sandbox/duplicate` delivers one again, as X
may. A reset drops the retries still waiting."""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from xsandbox import webhooks
from xsandbox.model import Delivery, Problem

RETRY_DELAYS = (1.0, 4.0, 16.0)
DELIVERY_TIMEOUT = 3.0
KEPT_PAYLOADS = 2_000  # the deliveries `duplicate` can send again

Item = tuple[str, str, dict[str, Any], str | None, int, str]  # url, for user, payload, kind, attempt, delivery id


class DeliveryMixin:
    consumer_secret: str
    lock: Any
    deliveries: list[Delivery]

    def _deliveries_start(self) -> None:
        self._outbox: queue.Queue[Item | None] = queue.Queue()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._retries: list[tuple[float, int, Item]] = []
        self._retry_cv = threading.Condition()
        self._order = itertools.count()
        self._ids = itertools.count(1)
        self._payloads: OrderedDict[str, Item] = OrderedDict()
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        self.delivery_timeout = DELIVERY_TIMEOUT
        threading.Thread(target=self._deliver_loop, name="xsandbox-deliveries", daemon=True).start()
        threading.Thread(target=self._retry_loop, name="xsandbox-retries", daemon=True).start()

    def _deliveries_clear(self) -> None:
        with self._retry_cv:
            self._retries.clear()
        with self.lock:
            self._payloads.clear()
        self.retry_delays, self.delivery_timeout = RETRY_DELAYS, DELIVERY_TIMEOUT

    def set_delivery(self, retry_delays: Any, timeout: Any) -> dict[str, Any]:
        """The retry schedule and the time an answer is waited for (X's: 1, 4, 16 s and 3 s)."""
        if retry_delays is not None:
            if not isinstance(retry_delays, list) or not all(
                isinstance(d, int | float) and 0 <= d <= 600 for d in retry_delays
            ):
                raise Problem(400, "Invalid Request", "retryDelays must be a list of seconds (0 to 600)")
            self.retry_delays = tuple(float(d) for d in retry_delays)
        if timeout is not None:
            if not isinstance(timeout, int | float) or not 0 < timeout <= 60:
                raise Problem(400, "Invalid Request", "deliveryTimeout must be seconds (above 0, at most 60)")
            self.delivery_timeout = float(timeout)
        return {"retryDelays": list(self.retry_delays), "deliveryTimeout": self.delivery_timeout}

    def _record(self, item: Item, status: int) -> Delivery:
        url, for_user_id, payload, kind, attempt, delivery_id = item
        kind = kind or next((k for k in payload if k.endswith("_events")), "unknown")
        events = [str(e.get("id")) for e in payload.get(kind, []) if isinstance(e, dict) and e.get("id")]
        delivery = Delivery(
            url=url,
            status=status,
            kind=kind,
            forUserId=for_user_id,
            at=time.time(),
            id=delivery_id,
            attempt=attempt,
            eventIds=events,
        )
        with self.lock:
            self.deliveries.append(delivery)
        return delivery

    def _attempt(self, item: Item) -> Delivery:
        status = webhooks.post(item[0], self.consumer_secret, item[2], timeout=self.delivery_timeout)
        delivery = self._record(item, status)
        attempt = item[4]
        with self.lock:
            current = item[5] in self._payloads  # not since a reset
        if current and not 200 <= status < 300 and attempt <= len(self.retry_delays):
            due = time.monotonic() + self.retry_delays[attempt - 1]
            with self._retry_cv:
                heapq.heappush(self._retries, (due, next(self._order), (*item[:4], attempt + 1, item[5])))
                self._retry_cv.notify()
        return delivery

    def _new_item(self, url: str, for_user_id: str, payload: dict[str, Any], kind: str | None) -> Item:
        with self.lock:
            item: Item = (url, for_user_id, payload, kind, 1, f"d{next(self._ids)}")
            self._payloads[item[5]] = item
            while len(self._payloads) > KEPT_PAYLOADS:
                self._payloads.popitem(last=False)
        return item

    def _deliver_now(self, url: str, for_user_id: str, payload: dict[str, Any], kind: str | None = None) -> Delivery:
        return self._attempt(self._new_item(url, for_user_id, payload, kind))

    def _enqueue(self, url: str, for_user_id: str, payload: dict[str, Any]) -> None:
        with self._pending_cv:
            self._pending += 1
        self._outbox.put(self._new_item(url, for_user_id, payload, None))

    def duplicate(self, delivery_id: str | None, event_id: str | None = None) -> dict[str, Any]:
        """Deliver an earlier delivery's events again, as a new delivery (X may deliver an event more than once):
        the delivery named, or the latest that carried the event."""
        with self.lock:
            if delivery_id:
                item = self._payloads.get(str(delivery_id))
            else:
                carried = [d.id for d in self.deliveries if str(event_id) in d.eventIds]
                item = self._payloads.get(carried[-1]) if carried else None
        if item is None:
            what = f"deliveryId: no delivery {delivery_id}" if delivery_id else f"eventId: no delivery of {event_id}"
            raise Problem(400, "Invalid Request", f"{what} to send again")
        again = self._new_item(item[0], item[1], item[2], item[3])
        return {"delivery": asdict(self._attempt(again))}

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            time.sleep(0.05)  # X delivers a moment after the API call that caused it
            try:
                self._attempt(item)
            except Exception:  # noqa: BLE001 - the loop outlives one bad delivery
                traceback.print_exc()
            finally:
                with self._pending_cv:
                    self._pending -= 1
                    self._pending_cv.notify_all()

    def _retry_loop(self) -> None:
        while True:
            with self._retry_cv:
                while not self._retries or self._retries[0][0] > time.monotonic():
                    wait = self._retries[0][0] - time.monotonic() if self._retries else None
                    self._retry_cv.wait(timeout=wait)
                _, _, item = heapq.heappop(self._retries)
            with self.lock:
                current = item[5] in self._payloads
            if current:
                try:
                    self._attempt(item)
                except Exception:  # noqa: BLE001 - the loop outlives one bad delivery
                    traceback.print_exc()

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Wait until the asynchronous first attempts (echoes of API sends) are done (retries are not waited for)."""
        with self._pending_cv:
            return self._pending_cv.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self) -> None:
        self._outbox.put(None)
