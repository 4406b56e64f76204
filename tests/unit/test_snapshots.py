"""Which snapshot images a restore may start from: only those its checkpoint can vouch for."""

from __future__ import annotations

from typing import Any

import orjson

from iotjobs.domain import thing
from iotjobs.runtime.eventlog import KeyImage
from iotjobs.runtime.snapshots import CHECKPOINT_KEY, SnapshotFold, checkpoint, image_records

KEY = "thing/t1"


def _image(seq: int, token: str) -> dict[str, Any]:
    state = thing.evolve(thing.initial(KEY), thing.ThingCreated("t1", "id-1"))
    return {**KeyImage(seq, state).to_dict(KEY), "token": token}


def _fold(*records: tuple[bytes, dict[str, Any] | bytes | None]) -> SnapshotFold:
    fold = SnapshotFold()
    for offset, (key, value) in enumerate(records):
        fold.feed(offset, key, orjson.dumps(value) if isinstance(value, dict) else value)
    return fold


def _large_image(seq: int, token: str) -> dict[str, Any]:
    """An image several parts long: a thing whose executions' documents weigh about a megabyte."""
    return {**_image(seq, token), "padding": "x" * 1_000_000}


def test_without_a_checkpoint_no_image_is_used() -> None:
    restart = _fold((KEY.encode(), _image(3, "a"))).restart()
    assert (restart.images, restart.offset, restart.untrusted) == ({}, 0, [])


def test_images_the_checkpoint_writer_read_or_wrote_are_used() -> None:
    restart = _fold(
        (KEY.encode(), _image(3, "a")),  # the former owner's, read by b when it took the partition
        (b"thing/t2", _image(1, "b")),  # b's own
        (CHECKPOINT_KEY, checkpoint(40, "b", {"dataplane": "b"}, seen=1)),
        (b"thing/t3", _image(2, "b")),  # b's own, from a round whose checkpoint is not written yet
    ).restart()
    assert sorted(restart.images) == [KEY, "thing/t2", "thing/t3"]
    assert (restart.offset, restart.tokens, restart.untrusted) == (40, {"dataplane": "b"}, [])


def test_a_late_image_of_a_fenced_owner_followed_by_a_checkpoint_forces_a_replay_from_the_start() -> None:
    restart = _fold(
        (KEY.encode(), _image(7, "b")),
        (KEY.encode(), _image(3, "a")),  # a, stalled, finishes a round after b took the partition
        (CHECKPOINT_KEY, checkpoint(40, "b", {"dataplane": "b"}, seen=0)),
    ).restart()
    assert (restart.images, restart.offset, restart.untrusted) == ({}, 0, [KEY])


def test_a_checkpoint_without_seen_vouches_for_the_images_before_it() -> None:
    legacy = {"offset": 40, "token": "b", "tokens": {"dataplane": "b"}}
    before = _fold((KEY.encode(), _image(3, "a")), (CHECKPOINT_KEY, legacy)).restart()
    after = _fold((CHECKPOINT_KEY, legacy), (KEY.encode(), _image(3, "a"))).restart()
    assert list(before.images) == [KEY] and after.untrusted == [KEY]


def test_a_deleted_image_is_not_restored() -> None:
    restart = _fold(
        (KEY.encode(), _image(3, "b")),
        (KEY.encode(), None),
        (CHECKPOINT_KEY, checkpoint(40, "b", {}, seen=0)),
    ).restart()
    assert restart.images == {} and restart.offset == 40


def test_a_large_image_is_stored_in_bounded_parts_and_restored_whole() -> None:
    image = _large_image(3, "b")
    records = image_records(KEY.encode(), orjson.dumps(image), limit=100_000)
    assert len(records) > 10 and max(len(value) for _key, value in records) <= 100_000
    restart = _fold(*records, (CHECKPOINT_KEY, checkpoint(40, "b", {}, seen=0))).restart()
    assert list(restart.images) == [KEY] and restart.images[KEY].seq == 3


def test_parts_overwritten_by_a_round_whose_head_was_lost_force_a_replay_from_the_start() -> None:
    first = image_records(KEY.encode(), orjson.dumps(_large_image(3, "b")), limit=100_000)
    second = image_records(KEY.encode(), orjson.dumps(_large_image(4, "b")), limit=100_000)
    restart = _fold(*first, *second[:-1], (CHECKPOINT_KEY, checkpoint(40, "b", {}, seen=0))).restart()
    assert (restart.images, restart.offset, restart.untrusted) == ({}, 0, [KEY])


def test_a_missing_part_forces_a_replay_from_the_start() -> None:
    records = image_records(KEY.encode(), orjson.dumps(_large_image(3, "b")), limit=100_000)
    restart = _fold(*records[1:], (CHECKPOINT_KEY, checkpoint(40, "b", {}, seen=0))).restart()
    assert restart.untrusted == [KEY]
