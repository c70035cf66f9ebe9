"""The compact set of the highest ids a socket sent (chat.recent_ids)."""

from chat.recent_ids import RecentIds


def test_recent_ids_keep_at_least_the_highest_capacity_ids():
    ids = RecentIds(3)
    for n in [0, 1, 2, 3, 5, 4, 6]:  # one out of order
        ids.add(n)
    assert [n in ids for n in range(8)] == [False] * 4 + [True] * 3 + [False]
    ids.add(5)  # already there: nothing changes
    assert [n in ids for n in range(8)] == [False] * 4 + [True] * 3 + [False]
