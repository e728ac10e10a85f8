"""A new process renders its first pages without compiling their templates again: the
compiled code is kept in ``<instance>/jinja-cache`` (checked against each template's
source by Jinja), and Babel's data for the app's languages is read when the app is made.

A worker forked from the server process finds what :func:`smart_app.warmup.prepare_for_fork`
built there: every template loaded, the pages' data-independent SQL compiled, the stored
Questionnaires' FHIRPath parsed; the warm-up writes nothing and leaves no connection open.
"""

from __future__ import annotations

import gc
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from babel import localedata
from sqlalchemy.engine.default import CACHE_MISS

from clinician_fixtures import app, ava, store  # noqa: F401  (fixtures)
from clinician_support import assign_once, complete_phq9
from hw_fhir.scoring.fhirpath import parse_cache
from hw_fhir.scoring.sdc import check_expressions
from hw_fhir.store.base import iter_all
from smart_app.warmup import prepare_for_fork, warm_expressions, warm_templates


def test_a_second_app_loads_compiled_templates_instead_of_compiling(
    app_config: dict[str, Any],
) -> None:
    from smart_app import create_app

    first = create_app(app_config)
    first.jinja_env.get_template("clinician/panel.html")
    first.jinja_env.get_template("clinician/base.html")
    cache = Path(app_config["instance_path"]) / "jinja-cache"
    assert any(cache.iterdir())
    first.extensions["hw_fhir"].close()

    second = create_app(app_config)  # as a new worker process would
    compiled: list[str] = []
    compile_source = second.jinja_env.compile

    def counting(source: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return compile_source(source, name, *args, **kwargs)

    second.jinja_env.compile = counting  # type: ignore[method-assign]
    second.jinja_env.get_template("clinician/panel.html")
    second.jinja_env.get_template("clinician/base.html")
    assert compiled == []
    # a template not rendered before is compiled (and kept for the next process)
    second.jinja_env.get_template("patient/todo.html")
    assert compiled == ["patient/todo.html"]
    second.extensions["hw_fhir"].close()


def test_languages_date_data_is_read_when_the_app_is_made(app_config: dict[str, Any]) -> None:
    from hw_fhir.i18n import LANGUAGES
    from smart_app import create_app

    for language in LANGUAGES:
        localedata._cache.pop(language, None)  # as in a fresh process
    app = create_app(app_config)
    assert all(language in localedata._cache for language in LANGUAGES)
    app.extensions["hw_fhir"].close()


# --------------------------------------------------------------------------------------------
# What the server process builds before the server forks its workers (smart_app.warmup)


def _in_forked_worker(app: Any, work: Any) -> Any:
    """Run ``work()`` in a child forked from this process (as the server forks a worker: the
    child rebuilds its database pool first); return what it returned (JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(read)
            app.extensions["hw_fhir"].after_fork()
            os.write(write, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the forked worker failed"
    return json.loads(data)


def _compiled_on_first_view(app: Any, get: Any, path: str) -> dict[str, Any]:
    """In a forked worker, view ``path`` once; return its status and the SQL statements
    SQLAlchemy compiled for it (statement-cache misses)."""
    engine = app.extensions["hw_fhir"].store.engine

    def work() -> dict[str, Any]:
        compiled: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
                 _many: Any) -> None:
            if getattr(context, "cache_hit", None) is CACHE_MISS:
                compiled.append(" ".join(statement.split())[:160])

        sa.event.listen(engine, "after_cursor_execute", seen)
        status = get(path).status_code
        return {"status": status, "compiled": compiled}

    return _in_forked_worker(app, work)


#: Statements of every clinician page that depend on no patient's data: the browser
#: session, the launch, the worker banner, undelivered reminders (reminder_job).
_PLUMBING = ("smart_web_session", "smart_launch", "reminder_state", "reminder_job")


def test_a_forked_worker_finds_the_pages_statements_compiled(
    app: Any, ava: Any, store: Any
) -> None:
    """After :func:`prepare_for_fork` a worker's first dashboard, panel and session prep
    compile none of the lookups every page makes, and fewer statements in all, than a
    worker forked before it (which compiles those lookups: the check sees them)."""
    start = datetime.now(timezone.utc) - timedelta(days=10)
    for i in range(3):
        task = assign_once(store, now=start + timedelta(days=i), due_in_days=1)
        complete_phq9(store, task, [1, 2, 1, 0, 1, 2, 1, 0, 0], when=start + timedelta(days=i))
    pages = ["/clinician/patients/pat-ava", "/clinician/panel",
             "/clinician/patients/pat-ava/session-prep"]
    cold = {path: _compiled_on_first_view(app, ava.get, path) for path in pages}
    prepare_for_fork(app)
    try:
        warmed = {path: _compiled_on_first_view(app, ava.get, path) for path in pages}
    finally:
        gc.unfreeze()
    for views in (cold, warmed):
        assert all(v["status"] == 200 for v in views.values()), views

    def plumbing(views: dict[str, Any]) -> dict[str, list[str]]:
        return {p: [s for s in v["compiled"] if any(t in s for t in _PLUMBING)]
                for p, v in views.items()}

    assert all(plumbing(cold).values()), plumbing(cold)
    assert not any(plumbing(warmed).values()), plumbing(warmed)
    counts = {p: (len(cold[p]["compiled"]), len(warmed[p]["compiled"])) for p in pages}
    assert all(after <= before // 2 for before, after in counts.values()), counts


def test_a_forked_worker_finds_every_template_loaded(app_config: dict[str, Any]) -> None:
    from smart_app import create_app

    app = create_app(app_config)
    assert warm_templates(app) > 40

    def work() -> list[str]:
        loaded: list[str] = []
        load = app.jinja_env.loader.load

        def counting(env: Any, name: str, globals: Any = None) -> Any:
            loaded.append(name)
            return load(env, name, globals)

        app.jinja_env.loader.load = counting
        for name in ("clinician/dashboard.html", "clinician/panel.html", "patient/todo.html",
                     "patient/progress.html", "clinician/session_prep.html"):
            app.jinja_env.get_template(name)
        return loaded

    assert _in_forked_worker(app, work) == []
    app.extensions["hw_fhir"].close()


def test_a_forked_worker_parses_no_expression_of_a_stored_questionnaire(
    app: Any, store: Any
) -> None:
    """The scores' FHIRPath of every stored Questionnaire is parsed before the fork: a
    worker scoring or reviewing a response parses none again."""
    parse_cache.cache_clear()  # as in a freshly started server
    assert warm_expressions(store) > 0
    assert parse_cache.cache_info().currsize > 0

    def work() -> int:
        before = parse_cache.cache_info().misses
        for questionnaire in iter_all(store, "Questionnaire", []):
            check_expressions(questionnaire)
        return parse_cache.cache_info().misses - before

    assert _in_forked_worker(app, work) == 0


def test_the_warm_up_writes_nothing_and_leaves_no_connection_or_thread(
    app: Any, store: Any
) -> None:
    import threading

    threads = threading.active_count()
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    sa.event.listen(store.engine, "before_cursor_execute", note)
    try:
        prepare_for_fork(app)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        sa.event.remove(store.engine, "before_cursor_execute", note)
    assert statements and set(statements) <= {"SELECT", "PRAGMA"}, sorted(set(statements))
    assert store.engine.pool.checkedin() == 0  # closed: no worker inherits a connection
    assert threading.active_count() == threads
