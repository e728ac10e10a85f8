"""Every plugin hook of hw-fhir, in one place.

A plugin is a module (or object) with functions decorated ``@hookimpl`` and named
after a hook below; it takes only the arguments it needs, by name. hw-fhir always
calls hooks with keyword arguments and evolves a hook only by adding arguments, so a
plugin written today keeps working. Install a plugin as a package with an entry
point in the ``hw_fhir`` group::

    [project.entry-points.hw_fhir]
    my_plugin = "my_plugin"

Naming: ``register_*`` hooks return things to collect (every plugin's list is used);
``*_for`` hooks give one answer (the first plugin to return something other than
None wins: "stops at first non-None result"); ``prepare_*`` hooks change their
argument in place; past-tense hooks (``task_created``, ``reminder_sent``) announce
what happened after it was stored and return nothing. ``docs/plugins.md`` shows
each hook with a runnable example; the built-in behaviour lives in
``hw_fhir/default_*.py`` plugins registered the same way, with ``trylast=True`` where
a vendor plugin should be able to override it.
"""

from __future__ import annotations

from typing import Any

from pluggy import HookimplMarker, HookspecMarker

__all__ = ["hookspec", "hookimpl", "PROJECT"]

#: Marker name, project name and entry-point group.
PROJECT = "hw_fhir"

hookspec = HookspecMarker(PROJECT)
hookimpl = HookimplMarker(PROJECT)


# -- reminder channels ------------------------------------------------------------------


@hookspec
def register_channels(settings: Any, store: Any) -> Any:
    """Return a list of reminder channels this plugin provides.

    Called once per plugin manager (the worker builds the list at start). ``settings``
    is the :class:`~hw_fhir.config.Settings`; read your own configuration from
    ``settings.extra`` (keys of the TOML config file). ``store`` is the running
    :class:`~hw_fhir.store.SqlStore` (None when the caller has none), for a channel
    that keeps its own addresses (the built-in ``webpush`` channel's subscriptions). Each channel satisfies
    :class:`hw_fhir.channels.Channel` (``name``, ``medium``, ``guarantee``,
    ``address(recipient)``, ``send(message)``). Return ``[]`` when the channel is not
    configured. A later plugin's channel with the same ``name`` replaces an earlier
    one (the built-ins are registered first).
    """


@hookspec(firstresult=True)
def channel_for(recipient: Any, task: Any, request: Any, channels: Any, preferences: Any,
                settings: Any) -> Any:
    """Return the name of the channel to send one reminder or alert with, or None.

    ``recipient`` is the Patient (reminders) or Practitioner (risk alerts) dict;
    ``task`` the Task the reminder is about (None for alerts); ``request`` the
    CommunicationRequest; ``channels`` maps name → channel, only channels that have an
    address for the recipient and that the patient has not opted out of;
    ``preferences`` the patient's :class:`~hw_fhir.reminders.ReminderPreferences`
    (None for practitioners). Stops at first non-None result; the built-in choice
    (``trylast``) is the Task's ``reminder-channel``, then the patient's preferred
    channel, then the EHR inbox for clinicians, then email, then any channel left.
    """


@hookspec
def prepare_message(message: Any, recipient: Any, task: Any, request: Any,
                    settings: Any) -> None:
    """Change an outgoing :class:`~hw_fhir.channels.Message` in place before it is sent.

    E.g. set ``message.text``/``message.subject`` in the patient's language, add
    ``message.headers``. Never add clinical content (activity names, scores,
    diagnoses): reminders travel over channels the patient does not control.
    Return nothing.
    """


@hookspec
def reminder_sent(store: Any, communication: Any, request: Any, task: Any, message: Any) -> None:
    """A reminder or alert was handed to its channel and recorded.

    ``communication`` is the stored Communication of this attempt (status
    ``completed``, or ``in-progress`` while the channel waits for a delivery
    callback); ``request`` the CommunicationRequest; ``task`` the Task (None for
    alerts); ``message`` the Message sent. Return nothing.
    """


@hookspec
def reminder_failed(store: Any, communication: Any, request: Any, task: Any, error: Any,
                    permanent: bool) -> None:
    """An attempt failed. ``permanent`` False: it will be retried with backoff.

    ``communication`` is the stored Communication of the attempt (status ``not-done``,
    ``statusReason`` says why) or None when the failure left nothing to record;
    ``error`` the :class:`~hw_fhir.errors.DeliveryError`. Return nothing.
    """


@hookspec
def delivery_status_changed(store: Any, communication: Any, previous_status: str) -> None:
    """A channel's delivery callback changed a Communication's status.

    E.g. an SMS went from ``in-progress`` to ``completed`` (delivered) or
    ``not-done`` (undelivered). ``communication`` is the stored Communication after
    the change. Return nothing.
    """


# -- scoring -----------------------------------------------------------------------------


@hookspec
def register_scorers() -> Any:
    """Return a list of scorers: callables ``(questionnaire, response) -> ScoreResult | None``.

    Each is a :class:`~hw_fhir.scoring.Scorer`: it returns None when the
    Questionnaire is not its instrument. The built-in ``score_for`` tries every
    registered scorer in order (the built-in PHQ-9, GAD-7, PHQ-2 and PCL-5 first).
    """


@hookspec(firstresult=True)
def score_for(questionnaire: Any, response: Any) -> Any:
    """Return the :class:`~hw_fhir.scoring.ScoreResult` of a response, or None if not yours.

    ``response`` already has its calculated items filled in (SDC
    calculatedExpression). Stops at first non-None result; the built-in
    implementation (``trylast``) asks the scorers of ``register_scorers``.
    """


@hookspec
def interpret_score(questionnaire: Any, response: Any, result: Any) -> Any:
    """Return a :class:`~hw_fhir.plugins.ScoreExtras` adding to a score, or None.

    Called after scoring with the ScoreResult. The extras' ``scores``, ``risks`` and
    ``notes`` are appended to the result; its ``interpretation`` is used only when the
    result has none. Every plugin's extras are applied.
    """


@hookspec
def risk_raised(store: Any, flag: Any, response: Any, task: Any, alert: Any) -> None:
    """A scorer's risk (e.g. PHQ-9 item 9 > 0) raised a safety Flag.

    Called once per Flag, after the Flag and its alert are stored, on every scoring
    path (the patient pages, /fhir writes, the worker's catch-up sweep); scoring the
    response again (a retry, an amendment that keeps the risk) finds the Flag stored
    and does not call it again. ``flag`` is the stored Flag, ``response`` the stored
    QuestionnaireResponse, ``task`` the Task it answers (or None), ``alert`` the stored
    clinician alert CommunicationRequest (``priority`` ``stat``, category
    ``risk-alert``) the worker delivers, or None. An exception is logged (plugin,
    hook, Flag id, exception type) and ignored: the Flag and alert stay stored and
    the other plugins are still called. Return nothing.
    """


# -- homework domain events --------------------------------------------------------------


@hookspec
def task_created(store: Any, task: Any) -> None:
    """A homework Task was created (one-off assignment or a plan occurrence).

    ``task`` is the stored SDC Task; ``store`` the Store written to. Return nothing.
    """


@hookspec
def task_status_changed(store: Any, task: Any, previous_status: str) -> None:
    """A Task's status changed (``requested`` → ``in-progress`` → ``completed``, ``cancelled``...).

    ``task`` is the stored Task after the change. Return nothing.
    """


@hookspec
def response_saved(store: Any, response: Any, task: Any) -> None:
    """A draft QuestionnaireResponse (``in-progress``) was saved for ``task``. Return nothing."""


@hookspec
def response_completed(store: Any, response: Any, task: Any, questionnaire: Any,
                       amended: bool) -> None:
    """A QuestionnaireResponse was submitted (or amended: ``amended`` True).

    ``questionnaire`` is the exact Questionnaire version it was validated against.
    Return nothing.
    """


@hookspec
def plan_created(store: Any, plan: Any, tasks: Any) -> None:
    """A CarePlan (recurring assignment or pathway) was created with its first ``tasks``.

    Return nothing.
    """


# -- web ---------------------------------------------------------------------------------


@hookspec
def register_blueprints(settings: Any) -> Any:
    """Return a list of Flask blueprints to mount on the app (e.g. a delivery callback).

    hw-fhir's core never imports Flask; only the app calls this hook. Views reach the
    running services through ``current_app.extensions["hw_fhir"]``. A view that
    authenticates without the browser session (a vendor's signed callback) sets
    ``view.csrf_exempt = True``.
    """


@hookspec
def register_template_dirs(settings: Any) -> Any:
    """Return a list of folders with Jinja templates; they are searched before the app's own."""


# -- catalog -----------------------------------------------------------------------------


@hookspec
def register_catalog(settings: Any) -> Any:
    """Return a list of :class:`~hw_fhir.plugins.CatalogContent` (Questionnaires and pathways).

    Questionnaires are FHIR R4 dicts with a canonical ``url`` and ``version``;
    pathways follow :func:`hw_fhir.catalog.check_pathway`. ``hw-fhir db upgrade``
    writes every plugin's Questionnaires into the store (idempotently).
    """


# -- worker and life cycle ---------------------------------------------------------------


@hookspec
def register_worker_tasks(settings: Any) -> Any:
    """Return a list of periodic jobs: callables ``(services) -> int`` (how much work was done).

    ``hw-fhir worker`` runs every job once per cycle, in plugin order, and sleeps
    only when a whole cycle did nothing. A job must be safe to run in several workers
    at once (claim work with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL) and
    should do a bounded amount of work per call. An exception is logged and the next
    job runs.
    """


@hookspec
def database_upgraded(services: Any) -> None:
    """The schema was brought up to date; load your reference data now (idempotently).

    Called by ``hw-fhir db upgrade`` and at every start-up of ``serve``, ``worker`` and
    ``demo``, under the database's start-up lock (:mod:`hw_fhir.startup`), so one node
    at a time runs it.

    ``services`` is the :class:`~hw_fhir.services.Services`. Return nothing.
    """


@hookspec
def demo_data_loaded(services: Any) -> Any:
    """The demo practice was loaded; write your own demo data and return how much (int) or None."""
