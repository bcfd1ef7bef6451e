"""Posts that arrive together are stored together: one transaction, one commit, one round trip to Redis.

Every wire's adapter hands its post to ``signature_groups()`` and waits for the outcome. A few committer threads
each take whatever has queued since they were last free (up to GROUP_MAX posts) and pass it to
``signatures_receive``. Nothing waits to fill a group: a lone post is stored at once, as before, and under load a
group holds what arrived while the previous one was being stored. Per post, the statements, the commit (with its
WAL flush) and the thread hops were most of the intake's cost; per group, they are paid once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from django.db import connection

from intake.parse import IntakeError, SignedResponse
from intake.services import Received, signatures_receive

logger = logging.getLogger("intake")

# Posts stored in one transaction at most: bounds a group's statement size and how long its locks are held.
GROUP_MAX = 64
# Committer threads per process. Two, so that one group's wait (on a pair another process holds, or on Postgres)
# does not stall every post, and few enough that posts queue up behind a busy committer and form groups.
COMMITTERS = 2

Post = tuple[str, Callable[[], SignedResponse], "Future[Received]"]


class SignatureGroups:
    """The committer threads of one process and the queue they take posts from."""

    def __init__(self, *, committers: int = COMMITTERS, group_max: int = GROUP_MAX) -> None:
        self.group_max = group_max
        self._queue: queue.SimpleQueue[Post] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._commit_forever, name=f"intake-commit-{n}", daemon=True)
            for n in range(committers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, *, source: str, parse: Callable[[], SignedResponse]) -> Future[Received]:
        """Queue one post (its source address and its parser); the future holds its outcome once stored."""
        future: Future[Received] = Future()
        self._queue.put((source, parse, future))
        return future

    def _commit_forever(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.group_max:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[Post]) -> None:
        # Never raises: a committer that died would leave every later post of this process unanswered.
        try:
            outcomes = signatures_receive(posts=[(source, parse) for source, parse, _ in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(group)} posts")
        except Exception:
            # A bug, not an outage (signatures_receive answers 503 for those): every post of the group is told
            # so, and the thread goes on with the next group.
            logger.exception("intake: unexpected error storing a group of %d posts", len(group))
            outcomes = [IntakeError("internal error", status=500) for _ in group]
        finally:
            # Back to the pool after every group: the committers outnumber no one's connections.
            try:
                connection.close()
            except Exception:
                logger.exception("intake: closing a committer's database connection failed")
        for (_, _, future), outcome in zip(group, outcomes, strict=True):
            future.set_result(outcome)


_groups: SignatureGroups | None = None
_groups_lock = threading.Lock()


def signature_groups() -> SignatureGroups:
    """This process's committers, started on first use."""
    global _groups
    with _groups_lock:
        if _groups is None:
            _groups = SignatureGroups()
        return _groups
