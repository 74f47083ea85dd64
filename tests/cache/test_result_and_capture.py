"""A cached result as one blob and as pages, and the capture that gathers it from a query's pages:
only a query that finished with inline rows within the limit leaves a result behind."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from gateway.cache.capture import FAILED, SPOOLED, TOO_LARGE, UNREADABLE, Capture
from gateway.cache.result import Result

COLUMNS = [{"name": "id", "type": "bigint"}, {"name": "name", "type": "varchar"}]


def result(rows: int, width: int = 10) -> Result:
    return Result(orjson.dumps(COLUMNS), [orjson.dumps([n, "x" * width]) for n in range(rows)])


# -- the blob ---------------------------------------------------------------------------------------
def test_a_small_result_is_kept_plain_and_decodes_to_itself():
    small = result(3)
    blob = small.encode()
    assert blob[:1] == b"P"
    assert Result.decode(blob) == small


def test_a_large_result_is_deflated_and_decodes_to_itself():
    large = result(2_000)
    blob = large.encode()
    assert blob[:1] == b"Z"
    assert len(blob) < large.size
    assert Result.decode(blob) == large


def test_a_result_without_rows_decodes_to_itself():
    empty = Result(orjson.dumps(COLUMNS), [])
    assert Result.decode(empty.encode()) == empty


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[: len(blob) // 2],
        lambda blob: blob[:-1],
        lambda blob: b"",
        lambda blob: b"X" + blob[1:],
        lambda blob: b"Z" + blob[1:] if blob[:1] == b"P" else b"P" + blob[1:],  # the wrong marker
        lambda blob: blob[:-5] + bytes(5),
    ],
    ids=["cut-in-half", "cut-by-one", "empty", "unknown-marker", "wrong-marker", "overwritten-end"],
)
def test_a_damaged_blob_decodes_to_none(damage):
    for blob in (result(3).encode(), result(2_000).encode()):
        assert Result.decode(damage(blob)) is None


def test_a_blob_whose_row_count_is_not_its_header_s_decodes_to_none():
    blob = result(3).encode()
    assert Result.decode(blob + b'\n[9,"extra"]') is None
    assert Result.decode(blob.rsplit(b"\n", 1)[0]) is None
    header = orjson.dumps({"columns": COLUMNS, "rows": 1})
    assert Result.decode(b"P" + header + b"\n[1]") is not None
    assert Result.decode(b"P" + orjson.dumps({"columns": "id", "rows": 1}) + b"\n[1]") is None
    assert Result.decode(b"P" + orjson.dumps([COLUMNS, 1]) + b"\n[1]") is None
    assert Result.decode(b"P" + header + b"\n{}") is None


# -- pages ------------------------------------------------------------------------------------------
def page_bytes(rows: list[bytes]) -> int:
    """A page's rows as its JSON array holds them, separators included."""
    return sum(len(row) for row in rows) + len(rows) - 1


def test_pages_hold_every_row_once_in_order_and_none_is_over_the_page_size_unless_one_row_is():
    chance = random.Random(25)
    for _ in range(50):
        rows = [orjson.dumps(["x" * chance.randrange(0, 400)]) for _ in range(chance.randrange(1, 60))]
        limit = chance.randrange(50, 2_000)
        pages = Result(b"[]", rows).pages(limit)
        assert [row for start, end in pages for row in rows[start:end]] == rows
        assert pages[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(pages))
        for start, end in pages:
            assert end > start
            assert page_bytes(rows[start:end]) <= limit or end - start == 1


def test_pages_are_filled_up_to_the_page_size():
    rows = [b"[1234567]"] * 10  # 9 bytes each, 10 with a separator
    assert Result(b"[]", rows).pages(29) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert Result(b"[]", rows).pages(28) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]


def test_a_row_larger_than_a_page_has_a_page_of_its_own():
    rows = [b"[1]", b"[" + b"9" * 100 + b"]", b"[2]"]
    assert Result(b"[]", rows).pages(20) == [(0, 1), (1, 2), (2, 3)]


def test_a_result_without_rows_has_one_page_for_its_columns():
    assert Result(orjson.dumps(COLUMNS), []).pages(1024) == [(0, 0)]


# -- capture ----------------------------------------------------------------------------------------
class Done:
    def __init__(self) -> None:
        self.calls: list[tuple[Result | None, str | None]] = []

    def __call__(self, result: Result | None, why: str | None) -> None:
        self.calls.append((result, why))


def page(
    rows: list[list[object]] | None = None,
    columns: bool = True,
    state: str = "RUNNING",
    **fields: object,
) -> bytes:
    body: dict[str, object] = {"id": "q1", "stats": {"state": state}, **fields}
    if columns:
        body["columns"] = COLUMNS
    if rows is not None:
        body["data"] = rows
    return orjson.dumps(body)


def captured(limit: int = 1_000_000) -> tuple[Capture, Done]:
    done = Done()
    capture = Capture(limit, done)
    capture.attach()
    return capture, done


def test_a_finished_query_leaves_its_columns_and_every_row_across_its_pages():
    capture, done = captured()
    capture.page(page(columns=False, state="QUEUED"), last=False)
    capture.page(page([[1, "a"], [2, "b"]]), last=False)
    capture.page(page([[3, "c"]], columns=False), last=False)
    capture.page(page(state="FINISHED"), last=True)
    assert done.calls == [(Result(orjson.dumps(COLUMNS), [b'[1,"a"]', b'[2,"b"]', b'[3,"c"]']), None)]
    assert not capture.open


def test_the_columns_come_from_the_first_page_that_has_them():
    capture, done = captured()
    capture.page(page(columns=False), last=False)
    capture.page(page([[1, "a"]]), last=False)
    capture.page(page([[2, "b"]], columns=True, state="FINISHED").replace(b'"bigint"', b'"integer"'), last=True)
    assert orjson.loads(done.calls[0][0].columns) == COLUMNS


def test_a_finished_query_without_rows_leaves_its_columns():
    capture, done = captured()
    capture.page(page([], state="FINISHED"), last=True)
    assert done.calls == [(Result(orjson.dumps(COLUMNS), []), None)]


@pytest.mark.parametrize(
    "last_page",
    [
        page(state="FAILED", error={"message": "boom"}),
        page(state="FINISHED", error={"message": "boom"}),
        page(state="CANCELED"),
        page(state="FINISHED", columns=False),
        page(state="FINISHED", updateType="INSERT"),
    ],
    ids=["failed", "error-on-a-finished-page", "canceled", "no-columns", "an-update"],
)
def test_a_query_that_did_not_finish_with_rows_leaves_nothing(last_page):
    capture, done = captured()
    capture.page(page([[1, "a"]]) if b"columns" in last_page else page([[1, "a"]], columns=False), last=False)
    capture.page(last_page, last=True)
    assert done.calls == [(None, FAILED)]


def test_an_error_on_any_page_ends_the_capture_at_once():
    capture, done = captured()
    capture.page(page([[1, "a"]], error={"message": "boom"}, state="FAILED"), last=False)
    assert done.calls == [(None, FAILED)]


def test_a_spooled_result_is_not_cached():
    capture, done = captured()
    capture.page(page({"encoding": "json", "segments": []}), last=False)
    assert done.calls == [(None, SPOOLED)]


def test_a_result_over_the_limit_is_not_cached_and_its_rows_are_let_go():
    capture, done = captured(limit=1_000)
    capture.page(page([[n, "x" * 10] for n in range(10)]), last=False)
    assert done.calls == []
    capture.page(page([[n, "x" * 10] for n in range(100)]), last=False)
    assert done.calls == [(None, TOO_LARGE)]
    assert capture._rows == []
    capture.page(page([[1, "a"]], state="FINISHED"), last=True)
    assert done.calls == [(None, TOO_LARGE)]


def test_a_query_that_ended_before_its_last_page_leaves_nothing():
    capture, done = captured()
    capture.page(page([[1, "a"]]), last=False)
    capture.ended()
    assert done.calls == [(None, FAILED)]


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b"[1,2]", b'"text"', b""])
def test_a_page_that_is_not_a_trino_document_leaves_nothing(body):
    capture, done = captured()
    capture.page(body, last=False)
    assert done.calls == [(None, UNREADABLE)]


def test_done_is_called_exactly_once_whatever_follows():
    capture, done = captured()
    capture.page(page([[1, "a"]], state="FINISHED"), last=True)
    capture.page(page([[2, "b"]], state="FINISHED"), last=True)
    capture.ended()
    capture.page(b"not json", last=False)
    capture.attach()
    capture.page(page([[3, "c"]], state="FINISHED"), last=True)
    assert len(done.calls) == 1
    assert done.calls[0][0] is not None and done.calls[0][0].rows == [b'[1,"a"]']


def test_attach_starts_the_result_over_for_a_backend_that_takes_the_query_again():
    capture, done = captured()
    capture.page(page([[1, "stale"]]).replace(b'"bigint"', b'"integer"'), last=False)
    capture.attach()
    assert capture.attached
    capture.page(page([[1, "a"]]), last=False)
    capture.page(page(state="FINISHED"), last=True)
    assert done.calls == [(Result(orjson.dumps(COLUMNS), [b'[1,"a"]']), None)]
