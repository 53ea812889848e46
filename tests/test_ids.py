"""Identifiers are prefixed, unique and sort in creation order."""

import re

from tidings.ids import new_id


def test_ids_carry_their_prefix_and_a_26_character_ulid() -> None:
    assert re.fullmatch(r"post_[0-9A-HJKMNP-TV-Z]{26}", new_id("post"))


def test_ids_made_in_one_process_sort_in_creation_order() -> None:
    ids = [new_id("post") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_the_ulid_encodes_the_millisecond_in_its_first_ten_characters() -> None:
    import time

    before = time.time_ns() // 1_000_000
    ulid = new_id("x")[2:]
    after = time.time_ns() // 1_000_000
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ms = 0
    for char in ulid[:10]:
        ms = ms * 32 + alphabet.index(char)
    assert before <= ms <= after
