"""A paginator that can be told its count: lists over a table that grows take it from the counts kept by the
writes (``controlplane.rowcounts``) instead of counting every row on each page."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CountedPaginator(Paginator):
    def __init__(self, object_list: Any, per_page: int, *, known_count: int | None = None) -> None:
        super().__init__(object_list, per_page)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        return super().count if self.known_count is None else self.known_count
