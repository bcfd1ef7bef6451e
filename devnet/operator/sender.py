"""Delivers signed responses from a due-time queue: to the control plane until it accepts them, or
(``direct``) to the aggregator with upstream's policy (10 tries, 10 s apart, then give up)."""

from __future__ import annotations

import heapq
import json
import logging
import time
from typing import Any

import requests

from controlplane.netrpc import Client, ProtocolError, RpcError
from devnet.operator.base import OperatorBase
from devnet.operator.common import (
    RETRYABLE_4XX,
    _Delivery,
    _describe,
)
from intake.parse import signed_response_parse
from intake.wire import METHOD, SIGNED_TASK_RESPONSE, signed_response_to_gob

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
        if self.wire == "gob":
            self._attempt_gob(delivery)
        else:
            self._attempt_http(delivery)

    def _attempt_http(self, delivery: _Delivery) -> None:
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
            answer: dict[str, Any] = {}
            try:
                body = response.json()
                answer = body if isinstance(body, dict) else {}
            except ValueError:
                pass
            self._delivered(delivery, detail, ack=answer if status == 202 else None)
            return
        refused = status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX
        self._failed(delivery, detail, refused=refused)

    def _attempt_gob(self, delivery: _Delivery) -> None:
        """Go net/rpc, as Aligned's operator: an error is retried; the reply value is not read (upstream ignores
        it, so an aggregator's reply of 1, a dropped signature, counts as sent)."""
        try:
            argument = signed_response_to_gob(signed_response_parse(delivery.body))
            reply = self._rpc_client().call(METHOD, SIGNED_TASK_RESPONSE, argument)
        except RpcError as exc:
            # What the control plane's intake refuses for good says "refused (field): why".
            self._failed(delivery, f"net/rpc error: {exc}", refused=str(exc).startswith("refused"))
            return
        except (OSError, ProtocolError) as exc:
            self._rpc_drop()
            self._failed(delivery, f"{type(exc).__name__}: {_describe(exc)}", refused=False)
            return
        # Through the control plane a reply of 0 means stored: its acknowledgement.
        ack = {"status": "accepted", "signatureId": None} if not self.direct and reply == 0 else None
        self._delivered(delivery, f"net/rpc reply {reply}", ack=ack)

    def _rpc_client(self) -> Client:
        client: Client | None = getattr(self._rpc_local, "client", None)
        if client is None:
            host, _, port = self.send_url.rpartition(":")
            client = Client(host, int(port), timeout=self.timing.send_timeout)
            self._rpc_local.client = client
        return client

    def _rpc_drop(self) -> None:
        client: Client | None = getattr(self._rpc_local, "client", None)
        self._rpc_local.client = None
        if client is not None:
            client.close()

    def _delivered(self, delivery: _Delivery, detail: str, *, ack: dict[str, Any] | None) -> None:
        with self._lock:
            self._counters.responses_sent += 1
            self._outcomes.append(True)
        if ack is not None and self.acks_path is not None:
            self._record_ack(delivery, ack)
        logger.info(
            "%s: batch %s sent to %s (%s, attempt %d)",
            self.name,
            delivery.task.root,
            self.send_url,
            detail,
            delivery.attempts,
        )

    def _failed(self, delivery: _Delivery, detail: str, *, refused: bool) -> None:
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
        elif refused:
            self._abandon(delivery, f"{self.send_url} refused it: {detail}")
            return
        delay = self.timing.direct_retry_interval if self.direct else self._backoff(delivery.attempts)
        logger.warning(
            "%s: batch %s not delivered (%s); attempt %d%s, retry in %.1fs",
            self.name,
            delivery.task.root,
            detail,
            delivery.attempts,
            f"/{self.timing.direct_max_tries}" if self.direct else "",
            delay,
        )
        self._enqueue(delivery, delay=delay)

    def _record_ack(self, delivery: _Delivery, answer: dict[str, Any]) -> None:
        assert self.acks_path is not None
        sent = json.loads(delivery.body)
        line = json.dumps(
            {
                "batchIdentifierHash": sent["batchIdentifierHash"],
                "operatorId": sent["operatorId"],
                "blsSignature": sent["blsSignature"],
                "status": answer.get("status"),
                "signatureId": answer.get("signatureId"),
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
