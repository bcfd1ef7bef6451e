"""Delivers signed responses from a due-time queue: to the control plane until it accepts them, or
(``direct``) to the aggregator with upstream's policy (10 tries, 10 s apart, then give up)."""

from __future__ import annotations

import heapq
import json
import logging
import time

import requests

from devnet.operator.base import OperatorBase
from devnet.operator.common import (
    RETRYABLE_4XX,
    _Delivery,
    _describe,
)

logger = logging.getLogger("devnet.operator")


class Sender(OperatorBase):
    """Signed responses, delivered from a due-time queue by a few sender threads."""

    def _enqueue(self, delivery: _Delivery, *, delay: float) -> None:
        with self._send_cond:
            heapq.heappush(self._send_heap, (time.monotonic() + delay, next(self._send_seq), delivery))
            self._send_cond.notify()

    def _send_loop(self) -> None:
        while True:
            with self._send_cond:
                while True:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if self._send_heap and self._send_heap[0][0] <= now:
                        _, _, delivery = heapq.heappop(self._send_heap)
                        self._sending[id(delivery)] = delivery
                        break
                    wait = self._send_heap[0][0] - now if self._send_heap else 1.0
                    self._send_cond.wait(min(wait, 1.0))
            try:
                self._attempt(delivery)
            except Exception:
                logger.exception(
                    "%s: batch %s: unexpected failure while sending", self.name, delivery.task.root
                )
            finally:
                with self._send_cond:
                    self._sending.pop(id(delivery), None)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.timing.backoff_cap, self.timing.backoff_base * 2 ** (attempts - 1)))

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        root = delivery.task.root
        status: int | None = None
        try:
            response = requests.post(
                self.send_url,
                data=delivery.body,
                headers={"Content-Type": "application/json", "User-Agent": f"devnet-{self.name}"},
                timeout=self.timing.send_timeout,
                allow_redirects=False,
            )
            status = response.status_code
            detail = f"HTTP {status}"
            if status >= 300:
                text = response.text.strip().replace("\n", " ")
                detail += f": {text[:200]}" if text else ""
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}: {_describe(exc)}"
        if status is not None and 200 <= status < 300:
            with self._lock:
                self._counters.responses_sent += 1
                self._outcomes.append(True)
            if status == 202 and self.acks_path is not None:
                self._record_ack(delivery, response)
            logger.info(
                "%s: batch %s sent to %s (HTTP %d, attempt %d)",
                self.name,
                root,
                self.send_url,
                status,
                delivery.attempts,
            )
            return
        with self._lock:
            self._counters.responses_failed += 1
        if self.direct:
            # Upstream's policy: any failure (the aggregator's 404 for a task it has not seen yet included)
            # is retried, up to the number of tries, then the response is dropped.
            if delivery.attempts >= self.timing.direct_max_tries:
                self._abandon(
                    delivery, f"not accepted by {self.send_url} after {delivery.attempts} tries: {detail}"
                )
                return
        elif status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
            self._abandon(delivery, f"{self.send_url} refused it: {detail}")
            return
        delay = self.timing.direct_retry_interval if self.direct else self._backoff(delivery.attempts)
        logger.warning(
            "%s: batch %s not delivered (%s); attempt %d%s, retry in %.1fs",
            self.name,
            root,
            detail,
            delivery.attempts,
            f"/{self.timing.direct_max_tries}" if self.direct else "",
            delay,
        )
        self._enqueue(delivery, delay=delay)

    def _record_ack(self, delivery: _Delivery, response: requests.Response) -> None:
        assert self.acks_path is not None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        sent = json.loads(delivery.body)
        line = json.dumps(
            {
                "batchIdentifierHash": sent["batchIdentifierHash"],
                "operatorId": sent["operatorId"],
                "blsSignature": sent["blsSignature"],
                "status": answer.get("status") if isinstance(answer, dict) else None,
                "signatureId": answer.get("signatureId") if isinstance(answer, dict) else None,
                "at": time.time(),
            }
        )
        with self._lock:
            self.acks_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.acks_path, "a") as acks:
                acks.write(line + "\n")

    def _abandon(self, delivery: _Delivery, reason: str) -> None:
        with self._lock:
            # Not "signed" any more as far as a catch-up is concerned: asked again, it signs and sends again.
            self._batches.pop(delivery.task.key, None)
            self._counters.responses_abandoned += 1
            self._outcomes.append(False)
        logger.error("%s: batch %s abandoned (%s)", self.name, delivery.task.root, reason)
