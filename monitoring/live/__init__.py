"""Live updates: small change messages over Channels, sent only after the change is committed.

Sockets are never the truth. A consumer sends a snapshot on connect; after that each message is

    {"type": "change", "seq": 17, "kind": "signature.accepted", "batch": "0x…", "operator": "0x…", "data": {…}}

where ``seq`` counts the messages of that group (``quorum`` or ``batch.<identifier>``). A client that sees a gap
in ``seq`` (or reconnects) asks for a fresh snapshot with ``{"type": "resync"}``.

Kinds: signature.accepted, signature.verified, signature.invalid, progress (new stake counters of a batch),
quorum.reached, batch.created, batch.verified, operator.state, recovery.run, recovery.task, alert.opened,
alert.resolved.
"""
