"""A compact set of the highest ids seen, for per-socket bookkeeping (``chat.outbox``)."""

from __future__ import annotations

from array import array
from bisect import bisect_left


class RecentIds:
    """The highest ids added (at least ``capacity`` of them), in a compact sorted array.

    Every socket keeps one and adds every message it frames, so it must stay small: 8 bytes
    an id, no int objects, no hash table (a set of 2,048 ids costs ~100 KB). Ids arrive in
    increasing order almost always, so adding is an append.
    """

    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids = array("q")

    def __contains__(self, item: int) -> bool:
        ids = self._ids
        index = bisect_left(ids, item)
        return index < len(ids) and ids[index] == item

    def add(self, item: int) -> None:
        ids = self._ids
        if not ids or item > ids[-1]:
            ids.append(item)
        else:
            index = bisect_left(ids, item)
            if index < len(ids) and ids[index] == item:
                return
            ids.insert(index, item)
        if len(ids) > 2 * self.capacity:
            del ids[: len(ids) - self.capacity]  # trimmed in halves: amortised O(1)
