"""Writing and reading stored completions, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import random
import time
from functools import partial
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from tests.store.helpers import call, eventually, make_store

from switchyard.errors import InvalidRequestError, NotFoundError
from switchyard.ids import new_completion_id
from switchyard.server.stream import Tap
from switchyard.sink import StoredCall
from switchyard.store import InferenceStore, ListQuery
from switchyard.store.failures import is_transient
from switchyard.store.queries import Order, count_rows, insert_rows
from switchyard.store.record import record_of, row_values


async def write_all(store: InferenceStore, calls: list[StoredCall]) -> None:
    for c in calls:
        await store.completion_finished(c)
    await store.writer.wait_all_settled()


async def walk(store: InferenceStore, **query: Any) -> list[str]:
    """Every id, page by page, as a client following ``last_id`` would see them."""
    seen: list[str] = []
    after = None
    while True:
        page = (await store.list_completions(ListQuery(after=after, **query))).to_json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            assert len(page["data"]) <= query.get("limit", 20)
            return seen
        assert page["first_id"] == page["data"][0]["id"]
        after = page["last_id"]


async def test_a_completion_round_trips(store: InferenceStore) -> None:
    c = call(1, metadata={"team": "a"})
    await write_all(store, [c])
    got = await store.get_completion("chatcmpl-test-000001")
    assert got["id"] == "chatcmpl-test-000001"
    assert got["object"] == "chat.completion"
    assert got["choices"][0]["message"]["content"] == "answer 1"
    assert got["usage"]["total_tokens"] == 5
    assert got["metadata"] == {"team": "a"}
    assert got["input_messages"] == [{"role": "user", "content": "question 1"}]
    assert got["switchyard"]["provider_id"] == "fake"
    assert got["switchyard"]["provider_completion_id"] == "p-1"
    assert got["switchyard"]["finished"] - got["switchyard"]["started"] == pytest.approx(0.25)
    assert got["switchyard"]["streamed"] is False


async def test_a_stream_is_stored_assembled(store: InferenceStore) -> None:
    chunks = [
        {"id": "chatcmpl-s", "created": 1, "model": "m", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "he"}, "finish_reason": None}]},
        {"id": "chatcmpl-s", "created": 1, "model": "m", "choices": [
            {"index": 0, "delta": {"content": "y"}, "finish_reason": "stop"}]},
    ]  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
    await write_all(store, [StoredCall(body, "fake", 1.0, 2.0, chunks=chunks)])
    got = await store.get_completion("chatcmpl-s")
    message = {"role": "assistant", "content": "hey", "refusal": None}  # as a whole answer
    assert got["choices"][0]["message"] == message
    assert got["switchyard"]["streamed"] is True


async def test_a_stream_stored_as_its_chunks_reads_as_the_one_assembled_when_written(
    store: InferenceStore,
) -> None:
    # The chat handler's record: the tap's array (a text-only chunk kept as its text),
    # stored as it is and assembled when read. A StoredCall's stream is assembled by
    # the writer. Both read the same.
    def chunks(completion_id: str) -> list[dict[str, Any]]:
        return [
            {"id": completion_id, "created": 1, "model": "m", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "he"}}]},
            {"id": completion_id, "created": 1, "model": "m", "choices": [
                {"index": 0, "delta": {"content": "y"}}]},
            {"id": completion_id, "created": 1, "model": "m", "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
        ]  # fmt: skip

    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
    tap = Tap()
    tap.dump(chunks("up-1"), {"id": "chatcmpl-tap", "model": "m"})
    answer = tap.answer()
    assert answer is not None and b',"y",' in answer  # the compact form
    empty = Tap().answer()
    assert empty == b"[]"
    raw = orjson.dumps(body)
    for our_id, stream in (("chatcmpl-tap", answer), ("chatcmpl-empty", empty)):
        waiting = store.hand_over((raw, stream, "fake", 1.0, 2.0, "up-1", True, None, our_id, True))
        if waiting is not None:
            await waiting
    old = StoredCall(
        body, "fake", 1.0, 2.0, chunks=chunks("chatcmpl-old"), provider_completion_id="up-1"
    )
    await write_all(store, [old])
    tapped = await store.get_completion("chatcmpl-tap")
    assembled = await store.get_completion("chatcmpl-old")
    assert tapped["choices"][0]["message"]["content"] == "hey"
    assert tapped["usage"]["total_tokens"] == 3
    assert {**tapped, "id": "chatcmpl-old"} == assembled
    listed = (await store.list_completions(ListQuery(order="asc"))).to_json()["data"]
    assert [item["id"] for item in listed] == ["chatcmpl-tap", "chatcmpl-empty", "chatcmpl-old"]
    assert listed[0] == tapped
    nothing = await store.get_completion("chatcmpl-empty")
    assert nothing["id"] == "chatcmpl-empty" and nothing["choices"] == []


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pagination_is_exact_when_every_row_shares_one_timestamp(
    store: InferenceStore, order: str
) -> None:
    same = time.time()
    await write_all(store, [call(n, started=same) for n in range(103)])
    seen = await walk(store, limit=7, order=order)
    assert len(seen) == 103
    assert sorted(seen) == sorted(f"chatcmpl-test-{n:06d}" for n in range(103))
    # Ties are broken by insertion order, the same way in both directions.
    assert seen == sorted(seen, reverse=order == "desc")


async def test_listing_orders_by_request_time_not_write_order(store: InferenceStore) -> None:
    starts = [1000.0 + n for n in range(30)]
    random.Random(4).shuffle(starts)
    await write_all(store, [call(n, started=s) for n, s in enumerate(starts)])
    page = await store.list_completions(ListQuery(limit=100))
    times = [item["switchyard"]["started"] for item in page.data]
    assert times == sorted(times, reverse=True)  # newest first, issue 4's default
    first = (await store.list_completions(ListQuery(limit=1, order="asc"))).data[0]
    assert first["switchyard"]["started"] == 1000.0


async def test_default_page_and_limits(store: InferenceStore) -> None:
    await write_all(store, [call(n) for n in range(25)])
    page = (await store.list_completions(ListQuery())).to_json()
    assert page["object"] == "list"
    assert len(page["data"]) == 20
    assert page["has_more"] is True
    assert page["first_id"] == "chatcmpl-test-000024"  # newest first
    empty = (await store.list_completions(ListQuery(model="nobody"))).to_json()
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


async def test_model_and_metadata_filters_paginate_too(store: InferenceStore) -> None:
    calls = [
        call(n, model=f"fake/m{n % 3}", metadata={"team": f"t{n % 2}", "run": "x"})
        for n in range(60)
    ]
    await write_all(store, calls)
    by_model = await walk(store, limit=6, model="fake/m1")
    assert by_model == [f"chatcmpl-test-{n:06d}" for n in reversed(range(60)) if n % 3 == 1]
    by_team = await walk(store, limit=9, order="asc", metadata={"team": "t0", "run": "x"})
    assert by_team == [f"chatcmpl-test-{n:06d}" for n in range(60) if n % 2 == 0]
    both = await walk(store, model="fake/m0", metadata={"team": "t1"})
    assert both == [f"chatcmpl-test-{n:06d}" for n in reversed(range(60)) if n % 6 == 3]
    assert await walk(store, metadata={"team": "nobody"}) == []


async def test_metadata_keys_with_any_character_filter(store: InferenceStore) -> None:
    keys = ['dq"', "bs\\", "sq'", "dot.ted", "$", "br[x]", "plain", "tab\tkey", "ctl\x01", "ü"]
    await write_all(store, [call(n, metadata={key: str(n)}) for n, key in enumerate(keys)])
    for n, key in enumerate(keys):
        assert await walk(store, metadata={key: str(n)}) == [f"chatcmpl-test-{n:06d}"], key
        assert await walk(store, metadata={key: "other"}) == [], key


async def test_a_providers_overlong_id_is_cut_and_the_completion_kept(
    store: InferenceStore,
) -> None:
    # PostgreSQL refused the whole row (a VARCHAR(256)); SQLite took it all.
    c = call(7)
    c.provider_completion_id = "p" * 300
    await write_all(store, [c])
    got = await store.get_completion("chatcmpl-test-000007")
    assert got["switchyard"]["provider_completion_id"] == "p" * 256


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_the_page_after_a_deleted_completion_skips_none(
    store: InferenceStore, order: Order
) -> None:
    # Ten rows 0.4 ms apart, so that several share the millisecond in their ids.
    starts = [1_700_000_000.0 + n * 0.0004 for n in range(10)]
    ids = [new_completion_id(int(t * 1e9)) for t in starts]
    await write_all(store, [call(n, started=starts[n], completion_id=ids[n]) for n in range(10)])
    await store.delete_completion(ids[5])
    page = await store.list_completions(ListQuery(after=ids[5], order=order, limit=100))
    got = [item["id"] for item in page.data]
    after = ids[6:] if order == "asc" else ids[4::-1]
    assert got[-len(after) :] == after  # every row after it, in order
    assert ids[5] not in got and len(got) < len(ids)  # a few of its neighbours at most again


async def test_unknown_ids_and_cursors_are_clear_errors(store: InferenceStore) -> None:
    with pytest.raises(NotFoundError, match="No stored chat completion 'chatcmpl-nope'"):
        await store.get_completion("chatcmpl-nope")
    with pytest.raises(InvalidRequestError, match="'after' names no stored") as err:
        await store.list_completions(ListQuery(after="chatcmpl-nope"))
    assert err.value.param == "after"
    with pytest.raises(NotFoundError):
        await store.list_messages("chatcmpl-nope", None, 20, "asc")
    with pytest.raises(NotFoundError):
        await store.update_metadata("chatcmpl-nope", {"a": "b"})
    with pytest.raises(NotFoundError):
        await store.delete_completion("chatcmpl-nope")


async def test_input_messages_list_with_ids_and_pages(store: InferenceStore) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "look: "}, {"type": "text", "text": "x"}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "more"},
        {"role": "user", "content": "last"},
    ]
    await write_all(store, [call(5, messages=messages)])
    cid = "chatcmpl-test-000005"
    first = (await store.list_messages(cid, None, 2, "asc")).to_json()
    assert [m["id"] for m in first["data"]] == [f"{cid}-0", f"{cid}-1"]
    assert first["has_more"] is True
    assert first["data"][1]["content"] == "look: x"
    assert first["data"][1]["content_parts"] == messages[1]["content"]
    assert first["data"][0]["content_parts"] is None
    rest = await store.list_messages(cid, first["last_id"], 10, "asc")
    assert [m["content"] for m in rest.data] == ["ok", "more", "last"]
    assert rest.has_more is False
    newest = await store.list_messages(cid, None, 2, "desc")
    assert [m["content"] for m in newest.data] == ["last", "more"]
    with pytest.raises(InvalidRequestError, match="names no message"):
        await store.list_messages(cid, "chatcmpl-other-1", 2, "asc")


async def test_metadata_update_replaces_and_is_searchable(store: InferenceStore) -> None:
    await write_all(store, [call(1, metadata={"old": "1"}), call(2)])
    updated = await store.update_metadata("chatcmpl-test-000002", {"label": "good"})
    assert updated["metadata"] == {"label": "good"}
    assert (await store.get_completion("chatcmpl-test-000002"))["metadata"] == {"label": "good"}
    assert await walk(store, metadata={"label": "good"}) == ["chatcmpl-test-000002"]
    cleared = await store.update_metadata("chatcmpl-test-000001", None)
    assert cleared["metadata"] == {}
    assert await walk(store, metadata={"old": "1"}) == []


async def test_metadata_update_sends_no_returning_clause(store: InferenceStore) -> None:
    # SQLite has RETURNING only from 3.35; older builds would refuse every update.
    await write_all(store, [call(1)])
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(statement)

    sa.event.listen(store.db.writes, "before_cursor_execute", capture)
    try:
        updated = await store.update_metadata("chatcmpl-test-000001", {"k": "v"})
    finally:
        sa.event.remove(store.db.writes, "before_cursor_execute", capture)
    assert updated["metadata"] == {"k": "v"}
    assert any(s.lstrip().upper().startswith("UPDATE") for s in sent)
    assert not any("RETURNING" in s.upper() for s in sent)


async def test_delete_removes_it_everywhere(store: InferenceStore) -> None:
    await write_all(store, [call(n) for n in range(3)])
    gone = await store.delete_completion("chatcmpl-test-000001")
    assert gone == {
        "id": "chatcmpl-test-000001",
        "object": "chat.completion.deleted",
        "deleted": True,
    }
    with pytest.raises(NotFoundError):
        await store.get_completion("chatcmpl-test-000001")
    assert await walk(store) == ["chatcmpl-test-000002", "chatcmpl-test-000000"]
    with pytest.raises(NotFoundError):
        await store.delete_completion("chatcmpl-test-000001")


async def test_a_retried_batch_does_not_store_an_id_twice(store: InferenceStore) -> None:
    await write_all(store, [call(1), call(1), call(2)])
    assert count_rows(store.db) == 2


async def test_policy_and_the_store_flag(store_url: str) -> None:
    everything = await make_store(store_url)
    opt_in = await make_store(store_url, policy="opt-in")
    try:
        assert everything.should_store({})
        assert everything.should_store({"store": True})
        assert not everything.should_store({"store": False})
        assert not opt_in.should_store({})
        assert opt_in.should_store({"store": True})
        assert not opt_in.should_store({"store": False})
    finally:
        await everything.close()
        await opt_in.close()


async def test_sync_durability_has_the_row_before_it_returns(store_url: str) -> None:
    store = await make_store(store_url, durability="sync")
    try:
        for n in range(5):
            await store.completion_finished(call(n))
            assert count_rows(store.db) == n + 1  # read directly: no read barrier here
    finally:
        await store.close()


async def rows_once_reopened(store_url: str) -> int:
    """The rows a new store on the same database finds: what a closed one wrote."""
    reopened = await make_store(store_url)
    try:
        return count_rows(reopened.db)
    finally:
        await reopened.close()


async def test_close_flushes_everything_queued(store_url: str) -> None:
    store = await make_store(store_url, batch_size=50)
    for n in range(400):
        await store.completion_finished(call(n))
    assert store.writer.settled < 400  # still queued: close must do the rest
    await store.close()
    assert await rows_once_reopened(store_url) == 400


async def test_a_read_ends_the_writers_wait_for_a_fuller_batch(store_url: str) -> None:
    # The writer lingers a minute to fill a batch; a read of this worker's own rows
    # waits for them at most READ_BARRIER_S (2 s), so without the read cutting the
    # linger short these reads would find nothing.
    store = await make_store(store_url, flush_interval=60)
    try:
        await store.completion_finished(call(1))
        assert (await store.get_completion("chatcmpl-test-000001"))["id"] == "chatcmpl-test-000001"
        # Queued while a read waits: no linger either, until the read has its rows.
        await store.completion_finished(call(2))
        await store.completion_finished(call(3))
        page = await store.list_completions(ListQuery(limit=10, order="asc"))
        assert [item["id"] for item in page.to_json()["data"]] == [
            f"chatcmpl-test-00000{n}" for n in (1, 2, 3)
        ]
    finally:
        await store.close()


async def test_a_full_batch_is_written_without_lingering_on(store_url: str) -> None:
    store = await make_store(store_url, flush_interval=60, batch_size=5)
    try:
        await store.completion_finished(call(1))
        await asyncio.sleep(0.1)  # the writer task is lingering now
        for n in range(2, 6):
            await store.completion_finished(call(n))
        await eventually(lambda: count_rows(store.db) == 5, "a full batch written", within=20)
    finally:
        await store.close()


def written(store: InferenceStore, count: int) -> bool:
    return store.writer.settled == count


async def test_a_batch_larger_than_the_queue_costs_no_row(store_url: str) -> None:
    store = await make_store(store_url, flush_interval=60, batch_size=500, queue_size=3)
    try:
        for n in range(1, 7):  # the queue holds three: each three must be taken off
            await store.completion_finished(call(n))
            if n % 3 == 0:
                await eventually(partial(written, store, n), "written", within=20)
        assert count_rows(store.db) == 6
    finally:
        await store.close()


async def test_close_does_not_wait_out_the_linger(store_url: str) -> None:
    store = await make_store(store_url, flush_interval=60)
    await store.completion_finished(call(1))
    await asyncio.sleep(0.1)  # the writer task is lingering now
    async with asyncio.timeout(20):  # the linger is a minute
        await store.close()
    assert await rows_once_reopened(store_url) == 1


@pytest.mark.parametrize("size", [1, 3, 300])
async def test_a_batch_of_any_size_is_written_whole_and_exactly_once(
    store: InferenceStore, size: int
) -> None:
    # 300 rows take statements of 256, 32, 8 and 4 rows; a repeated id is skipped.
    calls = [call(n) for n in range(size)]
    rows = [row_values(record_of(c)) for c in calls]
    await asyncio.to_thread(insert_rows, store.db, rows)
    await asyncio.to_thread(insert_rows, store.db, rows[:2])  # a retried batch
    assert count_rows(store.db) == size
    page = (await store.list_completions(ListQuery(limit=100, order="asc"))).to_json()
    assert [item["id"] for item in page["data"]] == [row[0] for row in rows[:100]]
    first = await store.get_completion(rows[0][0])
    sent = calls[0].completion
    assert isinstance(sent, dict) and first["choices"] == sent["choices"]


async def test_a_refused_batch_leaves_no_row_and_the_next_one_goes_in(
    store: InferenceStore,
) -> None:
    # The writer's transaction runs on the driver itself: what the database refuses
    # must still come out as SQLAlchemy's error (told apart as not worth a retry),
    # undo the whole batch, and leave the writer a connection that works.
    first, second = row_values(record_of(call(1))), row_values(record_of(call(2)))
    no_id = (None, *first[1:])  # NOT NULL
    with pytest.raises(sa.exc.IntegrityError) as refused:
        await asyncio.to_thread(insert_rows, store.db, [first, no_id])
    assert not is_transient(refused.value)
    # A value the driver cannot even bind (SQLite: OverflowError, not a database
    # error): no transaction may stay open on the writer's connection either.
    too_late = (first[0], 10**30, *first[2:])
    with pytest.raises((OverflowError, sa.exc.DataError)):
        await asyncio.to_thread(insert_rows, store.db, [first, too_late])
    await asyncio.to_thread(insert_rows, store.db, [second])
    assert count_rows(store.db) == 1  # the second batch's row alone


async def test_a_handed_over_record_waits_only_with_sync_durability(store_url: str) -> None:
    quick = await make_store(store_url, flush_interval=0)
    quick.hand_over(record_of(call(1)))
    await quick.writer.wait_all_settled()
    assert count_rows(quick.db) == 1
    await quick.close()
    careful = await make_store(store_url, durability="sync")
    waiting = careful.hand_over(record_of(call(2)))
    assert waiting is not None
    await waiting
    assert count_rows(careful.db) == 2  # committed before the wait ended
    await careful.close()
