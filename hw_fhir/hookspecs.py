"""Every plugin hook of hw-fhir, in one place; ``docs/plugins.md`` is their full text.

A plugin is a module (or object) with functions decorated ``@hookimpl`` and named
after a hook below; it takes only the arguments it needs, by name. hw-fhir always
calls hooks with keyword arguments and evolves a hook only by adding arguments, so a
plugin written today keeps working. Every hook receives ``services`` (the running
:class:`~hw_fhir.services.Services`, None where a caller runs without one).

Naming: ``register_*`` hooks return things to collect; ``*_for`` hooks give one
answer (the first non-None result wins); ``prepare_*`` hooks change their argument in
place; past-tense hooks (``task_created``, ``reminder_sent``) announce what happened
after it was stored and return nothing. The five homework domain events
(:data:`DOMAIN_EVENTS`) are published by :class:`hw_fhir.events.Events`. The built-in
behaviour lives in ``hw_fhir/default_*.py`` plugins; ``tryfirst``/``trylast`` on
their implementations decide where they run (``docs/plugins.md``, "Order of the
built-ins").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from .channels import Channel, Message
    from .config import Settings
    from .errors import DeliveryError
    from .plugins import CatalogContent, ScoreExtras
    from .reminders import ReminderPreferences
    from .scoring.results import ScoreResult, Scorer
    from .services import Services
    from .store.base import Store

    Resource = dict[str, Any]

__all__ = ["hookspec", "hookimpl", "PROJECT", "DOMAIN_EVENTS"]

#: Marker name, project name and entry-point group.
PROJECT = "hw_fhir"

hookspec = HookspecMarker(PROJECT)
hookimpl = HookimplMarker(PROJECT)


# -- reminder channels ------------------------------------------------------------------


@hookspec
def register_channels(settings: Settings, store: Store | None,
                      services: Services | None) -> list[Channel]:
    """Return the reminder channels this plugin provides (a later namesake replaces an earlier one)."""


@hookspec(firstresult=True)
def channel_for(recipient: Resource, task: Resource | None, request: Resource,
                communication_request: Resource, channels: Mapping[str, Channel],
                preferences: ReminderPreferences | None, settings: Settings,
                services: Services | None) -> str | None:
    """Return the name of the channel for one reminder or alert, or None (first non-None wins)."""


@hookspec
def prepare_message(message: Message, recipient: Resource, task: Resource | None,
                    request: Resource, communication_request: Resource, settings: Settings,
                    services: Services | None) -> None:
    """Change an outgoing Message in place before it is sent (never add clinical content)."""


@hookspec
def reminder_sent(store: Store, communication: Resource, request: Resource,
                  communication_request: Resource, task: Resource | None, message: Message,
                  services: Services | None) -> None:
    """A reminder or alert was handed to its channel and recorded as a Communication."""


@hookspec
def reminder_failed(store: Store, communication: Resource | None, request: Resource,
                    communication_request: Resource, task: Resource | None,
                    error: DeliveryError, permanent: bool, services: Services | None) -> None:
    """An attempt to send a reminder or alert failed (``permanent`` False: it is retried)."""


@hookspec
def delivery_status_changed(store: Store, communication: Resource, previous_status: str,
                            services: Services | None) -> None:
    """A channel's delivery callback changed a Communication's status."""


# -- scoring -----------------------------------------------------------------------------


@hookspec
def register_scorers(services: Services | None) -> list[Scorer]:
    """Return scorers ``(questionnaire, response) -> ScoreResult | None``, tried in order."""


@hookspec(firstresult=True)
def score_for(questionnaire: Resource, response: Resource,
              services: Services | None) -> ScoreResult | None:
    """Return the ScoreResult of a response, or None if not yours (first non-None wins)."""


@hookspec
def interpret_score(questionnaire: Resource, response: Resource, result: ScoreResult,
                    services: Services | None) -> ScoreExtras | None:
    """Return ScoreExtras adding scores, risks, notes or an interpretation to a result, or None."""


@hookspec
def risk_raised(store: Store, flag: Resource, response: Resource, task: Resource | None,
                alert: Resource | None, services: Services | None) -> None:
    """A scorer's risk raised a safety Flag (called once per Flag; failures are logged)."""


# -- homework domain events --------------------------------------------------------------


@hookspec
def task_created(store: Store, task: Resource, services: Services | None) -> None:
    """A homework Task was created (one-off assignment or a plan occurrence)."""


@hookspec
def task_status_changed(store: Store, task: Resource, previous_status: str | None,
                        services: Services | None) -> None:
    """A Task's status changed; ``task`` is the stored Task after the change."""


@hookspec
def response_saved(store: Store, response: Resource, task: Resource,
                   services: Services | None) -> None:
    """A draft QuestionnaireResponse (``in-progress``) was saved for ``task``."""


@hookspec
def response_completed(store: Store, response: Resource, task: Resource,
                       questionnaire: Resource, amended: bool,
                       services: Services | None) -> None:
    """A QuestionnaireResponse was submitted (or amended: ``amended`` True)."""


@hookspec
def plan_created(store: Store, plan: Resource, tasks: list[Resource],
                 services: Services | None) -> None:
    """A CarePlan (recurring assignment or pathway) was created with its first ``tasks``."""


#: The homework domain events, in the order above: :class:`hw_fhir.events.Events`
#: publishes each as the hook of the same name, with the hook's arguments.
DOMAIN_EVENTS = (task_created, task_status_changed, response_saved, response_completed,
                 plan_created)


# -- web ---------------------------------------------------------------------------------


@hookspec
def register_blueprints(settings: Settings, services: Services | None) -> list[Any]:
    """Return Flask blueprints to mount on the app (only the app calls this hook)."""


@hookspec
def register_template_dirs(settings: Settings, services: Services | None) -> list[str | Path]:
    """Return folders of Jinja templates, searched before the app's own."""


# -- catalog -----------------------------------------------------------------------------


@hookspec
def register_catalog(settings: Settings | None, services: Services | None) -> list[CatalogContent]:
    """Return CatalogContent: Questionnaires and pathway templates this plugin ships."""


# -- worker and life cycle ---------------------------------------------------------------


@hookspec
def register_worker_tasks(settings: Settings, services: Services | None) -> list[Any]:
    """Return periodic worker jobs: callables ``(services) -> int`` (how much work was done)."""


@hookspec
def database_upgraded(services: Services) -> None:
    """The schema was brought up to date; load your reference data now (idempotently)."""


@hookspec
def demo_data_loaded(services: Services) -> int | None:
    """The demo practice was loaded; write your own demo data and return how much (int) or None."""
