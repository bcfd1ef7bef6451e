"""Settings for the test suite: production settings with a throwaway key."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
# Tests flush Redis to prove it is disposable: keep them off the database a developer's `make run` uses.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")

# Rules are tested on operators declared down at once; the start-up grace has tests of its own.
os.environ.setdefault("ALERT_STARTUP_GRACE_SECONDS", "0")

# Tests post from 127.0.0.1 by the hundred; the per-address limit has tests of its own.
os.environ.setdefault("INTAKE_RATE", "1000000/min")
# The devnet's operators (and the tests' node APIs) live on 127.0.0.1; the refusal has tests of its own.
os.environ.setdefault("OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
# The devnet's aggregator speaks HTTP JSON; forwarding over gob to a Go aggregator has tests of its own.
os.environ.setdefault("AGGREGATOR_PROTOCOL", "http")

# Never a developer's devnet: network settings fall back to $DEVNET_DIR/devnet.json as settings load, so the
# suite points DEVNET_DIR at a directory of its own (tests that start a devnet give their own, as do children).
os.environ.setdefault("DEVNET_DIR", os.path.join(tempfile.gettempdir(), "controlplane-tests-devnet"))

from controlplane.settings import *  # noqa: F403
