"""Signed task responses and task announcements: checked, counted towards quorum, answered."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bls import (
    hash_to_g1,
)
from devnet.aggregator.common import (
    _NEG_G2,
    HttpError,
    Task,
    _bad_field,
    _identifier,
    _is_hex,
)
from devnet.aggregator.tasks import TaskStore
from intake.parse import IntakeError, SignedResponse, signed_response_parse

logger = logging.getLogger("devnet.aggregator")


class Signatures(TaskStore):
    """What POST /signatures and POST /tasks do."""

    def _answer(self, status: str, task: Task) -> dict[str, Any]:
        return {
            "status": status,
            "bootId": self.boot_id,
            "batchIdentifierHash": task.identifier,
            "signedStake": str(task.signed_stake),
            "totalStake": None if task.total_stake is None else str(task.total_stake),
        }

    def _chain_unavailable(self, exc: Exception) -> HttpError:
        return HttpError(
            503, {"error": f"chain unavailable: {exc}", "code": "chain_unavailable", "bootId": self.boot_id}
        )

    def _expired(self, identifier: str) -> HttpError:
        return HttpError(
            410,
            {
                "error": f"task expired after {self.config.task_window:g} s",
                "code": "task_expired",
                "batchIdentifierHash": identifier,
                "bootId": self.boot_id,
            },
        )

    def signature_receive(self, raw: bytes) -> dict[str, Any]:
        """Handle one signed response; returns the 200 body or raises HttpError."""
        try:
            response = signed_response_parse(raw)
        except IntakeError as exc:
            raise HttpError(exc.status, {**exc.as_json(), "code": "bad_request"}) from None
        return self.signature_accept(response)

    def signature_accept(self, response: SignedResponse) -> dict[str, Any]:
        """One parsed signed response (from either wire); returns the 200 body or raises HttpError."""
        identifier = response.batch_identifier
        operator_id = response.operator_id
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                self._expire_if_due(task, time.time())
        if task is None:
            raise HttpError(
                404,
                {
                    "error": "unknown task",
                    "code": "unknown_task",
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        if task.expired:
            raise self._expired(identifier)
        if task.responded:
            return self._answer("responded", task)

        public_key = self._public_key(operator_id)
        try:
            stake = self._stake(operator_id, task.task_created_block) if public_key is not None else 0
            total = self._total_stake(task.task_created_block)
        except Exception as exc:
            raise self._chain_unavailable(exc) from None
        if public_key is None or stake == 0:
            raise HttpError(
                403,
                {
                    "error": f"{operator_id} is not an operator with stake at block {task.task_created_block}",
                    "code": "not_an_operator",
                    "operatorId": operator_id,
                    "bootId": self.boot_id,
                },
            )
        known = task.signatures.get(operator_id)
        if known is not None and known == response.signature:
            return self._answer("duplicate", task)
        # BLS is deterministic: a second, different signature of one operator can only be invalid, and
        # since only verified signatures are kept, an invalid one never displaces or blocks a valid one.
        message = bytes.fromhex(identifier[2:])
        if not self.backend.pairing_check([(response.signature, _NEG_G2), (hash_to_g1(message), public_key)]):
            raise HttpError(
                400,
                {
                    "error": "the signature does not verify against the operator's key",
                    "code": "invalid_signature",
                    "operatorId": operator_id,
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        submit = False
        with self._lock:
            # Look again: it may have expired (or expired and been revived) while this request verified.
            current = self._tasks.get(identifier)
            if current is None or self._expire_if_due(current, time.time()):
                raise self._expired(identifier)
            task = current
            task.total_stake = total
            if task.responded:
                return self._answer("responded", task)
            status = "duplicate" if operator_id in task.signatures else "accepted"
            task.signatures[operator_id] = response.signature
            task.stakes[operator_id] = stake
            if task.has_quorum() and not task.submitting:
                task.submitting = True
                task.resubmit_at = None
                submit = True
            answer = self._answer(status, task)
        if submit:
            self._jobs.put(identifier)
        return answer

    def task_announce(self, raw: bytes) -> dict[str, Any]:
        """Handle POST /tasks {"batchMerkleRoot","senderAddress","taskCreatedBlock"}."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, {"error": "body is not valid JSON", "code": "bad_request"}) from None
        if not isinstance(document, dict):
            raise HttpError(400, {"error": "body must be a JSON object", "code": "bad_request"})
        root = document.get("batchMerkleRoot")
        sender = document.get("senderAddress")
        block = document.get("taskCreatedBlock")
        if not (isinstance(root, str) and _is_hex(root, 32)):
            raise HttpError(400, _bad_field("batchMerkleRoot", "0x and 64 hex digits"))
        if not (isinstance(sender, str) and _is_hex(sender, 20)):
            raise HttpError(400, _bad_field("senderAddress", "0x and 40 hex digits"))
        if isinstance(block, str) and block.isdigit():
            block = int(block)
        if not isinstance(block, int) or isinstance(block, bool) or not 0 < block < 2**32:
            raise HttpError(400, _bad_field("taskCreatedBlock", "a block number"))
        root, sender = root.lower(), sender.lower()
        identifier = _identifier(root, sender)
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                self._expire_if_due(task, time.time())
        if task is not None and task.responded:
            return self._task_answer("responded", task.identifier, task.task_created_block)
        if task is not None and not task.expired:
            return self._task_answer("exists", task.identifier, task.task_created_block)
        try:
            chain_block, responded = self._batch_state(identifier)
        except Exception as exc:
            raise self._chain_unavailable(exc) from None
        if chain_block == 0:
            raise HttpError(
                404,
                {
                    "error": "no such batch on chain",
                    "code": "unknown_batch",
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        if responded:
            return self._task_answer("responded", identifier, chain_block)
        if chain_block != block:
            logger.warning(
                "task %s announced with taskCreatedBlock %d, the chain says %d: using the chain's",
                identifier,
                block,
                chain_block,
            )
        task, created = self.task_add(
            root=root, sender=sender, task_created_block=chain_block, source="an announcement"
        )
        return self._task_answer("created" if created else "exists", identifier, task.task_created_block)

    def _task_answer(self, status: str, identifier: str, block: int) -> dict[str, Any]:
        return {
            "status": status,
            "bootId": self.boot_id,
            "batchIdentifierHash": identifier,
            "taskCreatedBlock": block,
        }
