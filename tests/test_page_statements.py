"""The clinician pages read a patient's history in a fixed number of SQL statements: a
patient with twice the completed homework (Tasks, responses, scores, reminders) costs no
more statements on the panel, the dashboard, session prep or the response review (no
N+1). Counts, not times: each view's statements are counted with an SQLAlchemy event
listener on the store's engine.

Three kinds are counted apart: SELECTs that read rows; the store's planner probes
(``SELECT count(*) FROM (SELECT 1 FROM sp_... LIMIT ...)``, at most one per filter of a
search, to choose the filter that drives it; which filter drives changes with the data,
so their number may move by one or two); and writes (the audit trail of a chart view is
written at most once in a while, the browser session when it changed). The number of
reads may not move at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import re

import sqlalchemy as sa

from clinician_support import Session, assign_once, complete_phq9
from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)

PAGES = {
    "panel": "/clinician/panel",
    "dashboard": "/clinician/patients/pat-ava",
    "session prep": "/clinician/patients/pat-ava/session-prep",
    "landing": "/app",
}


@contextmanager
def counting(engine: Any) -> Iterator[list[str]]:
    """Collect the SQL statements run on the engine inside the block."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def complete(store: Any, n: int, start: datetime) -> list[dict[str, Any]]:
    """Assign and complete ``n`` PHQ-9s for Ava in the last weeks (scored: responses and
    Observations); return the responses."""
    out = []
    for i in range(n):
        when = start + timedelta(hours=7 * i)
        task = assign_once(store, now=when, due_in_days=1)
        out.append(complete_phq9(store, task, [1, 2, 1, 0, 1, 2, 1, 0, 0], when=when))
    return out


_PROBE = re.compile(r"SELECT count\(\*\) AS count_1\s+FROM \(SELECT 1\s+FROM sp_\w+ ")


def statements(
    ava: Session, store: Any, extra: dict[str, str]
) -> tuple[dict[str, int], dict[str, int]]:
    """The reads and the planner probes of one view of each page (every page viewed once
    before: what a running server keeps, such as compiled templates, is not counted)."""
    pages = {**PAGES, **extra}
    for path in pages.values():
        assert ava.get(path).status_code == 200, path
    reads, probes = {}, {}
    for name, path in pages.items():
        with counting(store.engine) as seen:
            response = ava.get(path)
        assert response.status_code == 200, (name, response.status_code)
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        probes[name] = sum(1 for s in selects if _PROBE.match(s))
        reads[name] = len(selects) - probes[name]
        assert len(seen) - len(selects) <= 6, (name, seen)  # a few writes at most
    return reads, probes


def test_page_statements_do_not_grow_with_the_patients_history(
    ava: Session, store: Any
) -> None:
    start = datetime.now(timezone.utc) - timedelta(days=20)
    first = complete(store, 4, start)
    review = {"response review": f"/clinician/patients/pat-ava/responses/{first[-1]['id']}"}
    reads_n, probes_n = statements(ava, store, review)

    more = complete(store, 4, start + timedelta(days=3))
    review = {"response review": f"/clinician/patients/pat-ava/responses/{more[-1]['id']}"}
    reads_2n, probes_2n = statements(ava, store, review)

    assert reads_2n == reads_n
    assert all(probes_2n[name] <= probes_n[name] + 3 for name in probes_n), (probes_n, probes_2n)
    # and the figures themselves stay small: one search per kind of resource, not per row
    assert all(n <= 25 for n in reads_2n.values()), reads_2n
    assert all(probes_2n[name] <= reads_2n[name] for name in probes_2n), (reads_2n, probes_2n)


def test_statement_counting_sees_a_per_row_read(ava: Session, store: Any) -> None:
    """The counter is real: searching each response by id is one read per response."""
    responses = complete(store, 3, datetime.now(timezone.utc) - timedelta(days=5))
    with counting(store.engine) as seen:
        for response in responses:
            store.search("QuestionnaireResponse", [("_id", response["id"])])
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and not _PROBE.match(s)]
    assert len(reads) == len(responses)


def test_panel_reads_only_the_window_and_agrees_with_the_dashboard(
    app: Any, store: Any
) -> None:
    """The panel searches the Tasks due or done since the window's start, not a patient's
    whole history; homework due long ago and done in the window still counts, as on the
    dashboard (which reads every Task)."""
    from hw_fhir import review
    from hw_fhir.adherence import panel_summary

    now = datetime.now(timezone.utc)
    old = now - timedelta(days=60)
    late = assign_once(store, patient="pat-carmen", now=old - timedelta(days=3), due_in_days=3)
    assign_once(store, patient="pat-carmen", now=old - timedelta(days=9), due_in_days=3)
    recent = assign_once(store, patient="pat-carmen", now=now - timedelta(days=5), due_in_days=2)
    complete_phq9(store, late, [0] * 9, when=now - timedelta(days=1))  # done 60 days late
    complete_phq9(store, recent, [1] * 9, when=now - timedelta(days=3))
    rows = {row.patient: row.adherence for row in panel_summary(store, "dr-rivera", now=now)}
    carmen = rows["Patient/pat-carmen"]
    dash = review.patient_dashboard(store, "pat-carmen", now=now).adherence
    figures = ("assigned", "completed", "on_time", "missed", "overdue", "current_streak")
    assert [getattr(carmen, f) for f in figures] == [getattr(dash, f) for f in figures]
    assert (carmen.completed, carmen.assigned) == (2, 2)

    task_reads: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "FROM resource AS fetched" in statement and "Task" in tuple(parameters or ()):
            task_reads.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        panel_summary(store, "dr-rivera", now=now)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", note)
    # every Task search is bounded by a date (due, done), none reads a patient's every Task
    assert task_reads and all("sp_date" in s for s in task_reads), task_reads
