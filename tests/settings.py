"""Settings for the test suite: production settings with a throwaway key."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")

from controlplane.settings import *  # noqa: F403
