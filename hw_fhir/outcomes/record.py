"""Score a stored QuestionnaireResponse and record the results in the store.

:func:`record_scores` is what every path calls (the ``response_completed`` event of
the patient pages, a write through /fhir by an outside form filler, the
:func:`rescore_since` sweep):

1. resolve the exact Questionnaire version the response names (the store first, then
   the shipped catalog);
2. score it (:func:`hw_fhir.scoring.score_response`: SDC expressions, then the
   instrument scorers);
3. write, in ONE transaction Bundle: the response with its calculated items filled in
   (a new version, with If-Match, only when a calculated value changed); every
   Observation PUT on its deterministic id (only when new or changed — a changed one
   becomes ``amended``); Observations an earlier scoring made that the new one no
   longer yields set to ``entered-in-error``; a Flag and a stat alert per risk
   (:mod:`.safety`);
4. with ``plugins``, announce each Flag this scoring newly raised through the
   ``risk_raised`` hook, once the Flag and its alert are stored (a plugin that fails is
   logged and ignored: the Flag stays). A re-scoring that finds the Flag already
   stored announces nothing.

Re-scoring is idempotent: when nothing changed nothing is written, so a response may
be scored by several paths or by a retry. A response whose status is
``entered-in-error`` has its Observations retracted; drafts (``in-progress``) and
stopped responses are left alone. Scoring problems (unknown Questionnaire, an
expression that fails) never raise: they come back as warnings and nothing is
written. Store errors do raise (:func:`score_quietly` logs them instead).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import catalog
from ..config import Settings
from ..errors import HwFhirError, InvalidInput, Issue, NotFound, VersionConflict
from ..i18n import patient_language
from ..library import resolve_questionnaire
from ..models import validate
from ..plugins import call_each_quietly
from ..responses import check_response
from ..scoring import (
    OBSERVATION_SYSTEM,
    Scorer,
    ScoreResult,
    observations_for,
    score_response,
)
from ..store.base import Store, iter_all
from .crisis import CrisisInfo, crisis_resources
from .escalation import first_recipient
from .safety import answered_task, flag_entries, now_utc

__all__ = [
    "SCORED_STATUSES",
    "RecordedScores",
    "resolve_for",
    "store_resolver",
    "record_scores",
    "score_quietly",
    "rescore_since",
]

log = logging.getLogger("hw_fhir.outcomes")

Json = dict[str, Any]
#: Response statuses that are scored.
SCORED_STATUSES = ("completed", "amended")
_RETRACTED = "entered-in-error"
_ASSERTED = ("final", "amended", "corrected")
_ATTEMPTS = 3


@dataclass(frozen=True)
class RecordedScores:
    """What recording the scores of one response did.

    ``response`` is the response as stored afterwards (a new version when calculated
    items were filled in); ``observations`` the current score Observations, panel
    first; ``retracted`` those set to ``entered-in-error``; ``flags`` and ``alerts``
    the Flags and CommunicationRequests of the risks raised (new or already stored);
    ``raised`` the Flags this scoring created (announced through ``risk_raised``);
    ``warnings`` why something was not scored; ``crisis`` what to show the patient at
    once when a risk was raised (else None); ``written`` how many resources were
    written.
    """

    response: Mapping[str, Any]
    result: ScoreResult | None = None
    observations: tuple[Json, ...] = ()
    retracted: tuple[Json, ...] = ()
    flags: tuple[Json, ...] = ()
    alerts: tuple[Json, ...] = ()
    raised: tuple[Json, ...] = ()
    warnings: tuple[Issue, ...] = ()
    crisis: CrisisInfo | None = None
    written: int = 0

    @property
    def scored(self) -> bool:
        """True when the response was scored."""
        return self.result is not None

    @property
    def risk_raised(self) -> bool:
        """True when the response raised a risk (a Flag exists for it)."""
        return bool(self.flags)


def _warning(message: str, code: str = "processing", expression: str | None = None) -> Issue:
    return Issue(message, code=code, severity="warning", expression=expression)


def resolve_for(store: Store, response: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Questionnaire a response names: stored (exact version) first, then the catalog.

    A bare url names its newest active version; when only drafts (or retired versions) are
    stored, the one stored last (a response to a draft form is still scored).
    """
    ref = response.get("questionnaire")
    if not isinstance(ref, str) or not ref.strip():
        raise NotFound("The QuestionnaireResponse names no Questionnaire")
    try:
        return resolve_questionnaire(store, ref)
    except (NotFound, InvalidInput):
        pass
    try:
        return catalog.get_questionnaire(ref)
    except NotFound:
        pass
    # a bare url naming only draft/retired versions: a response to it is still scored
    url = ref.split("|", 1)[0]
    if "|" not in ref and "://" in url:
        found = [q for q in iter_all(store, "Questionnaire", [("url", url)])]
        if found:
            return max(found, key=lambda q: str((q.get("meta") or {}).get("lastUpdated", "")))
    raise NotFound(f"Questionnaire {ref} is neither stored nor in the catalog")


def _bare(resource: Mapping[str, Any]) -> Json:
    return {k: v for k, v in resource.items() if k != "meta"}


def _put(resource: Mapping[str, Any], version: str | None = None) -> Json:
    request: Json = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": dict(resource), "request": request}


def _ours(store: Store, response_id: str) -> dict[str, Json]:
    """The Observations an earlier scoring made from the response (by our identifier system).

    One filter, the identifier checked here: a response has a handful of derived
    Observations, and a second filter costs the SQL store a probe and a join per response.
    """
    found = iter_all(store, "Observation", [("derived-from", f"QuestionnaireResponse/{response_id}")])
    return {o["id"]: o for o in found
            if any(isinstance(i, Mapping) and i.get("system") == OBSERVATION_SYSTEM
                   for i in o.get("identifier") or ())}


def _observation_entries(new: list[Json],
                         existing: dict[str, Json]) -> tuple[list[Json], list[Json]]:
    """Return (entries to write, retracted Observations) for the new Observations."""
    entries: list[Json] = []
    for obs in new:
        prev = existing.get(obs["id"])
        if prev is None:
            entries.append(_put(obs))
            continue
        if prev.get("status") in _ASSERTED:
            if dict(_bare(prev), status=None) == dict(_bare(validate(obs)), status=None):
                continue
            obs = dict(obs, status="amended")
        entries.append(_put(obs, prev["meta"]["versionId"]))
    keep = {o["id"] for o in new}
    retracted = [dict(_bare(o), status=_RETRACTED) for o in existing.values()
                 if o["id"] not in keep and o.get("status") != _RETRACTED]
    entries += [_put(o, existing[o["id"]]["meta"]["versionId"]) for o in retracted]
    return entries, retracted


def _response_entry(response: Mapping[str, Any], calculated: Mapping[str, Any]) -> Json | None:
    if calculated.get("item") == response.get("item"):
        return None
    data = dict(_bare(response), item=calculated.get("item"))
    if not data["item"]:
        data.pop("item")
    if (response.get("meta") or {}).get("profile"):
        data["meta"] = {"profile": list(response["meta"]["profile"])}
    return _put(data, (response.get("meta") or {}).get("versionId"))


def _transact(store: Store, entries: list[Json]) -> tuple[list[Json], list[bool]]:
    """Run entries as one transaction; return the stored resources and which were written.

    A conditional create that found its match (``200``) wrote nothing.
    """
    if not entries:
        return [], []
    bundle = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    out = bundle.get("entry") or []
    written = [sent["request"]["method"] == "PUT"
               or str((got.get("response") or {}).get("status", "")).startswith("201")
               for sent, got in zip(entries, out, strict=True)]
    return [e.get("resource") or {} for e in out], written


def _retract_all(store: Store, response: Mapping[str, Any]) -> RecordedScores:
    entries, retracted = _observation_entries([], _ours(store, response["id"]))
    stored, written = _transact(store, entries)
    return RecordedScores(response=response, retracted=tuple(stored) or tuple(retracted),
                          written=sum(written))


def store_resolver(store: Store) -> Any:
    """Return a resolver of answer ValueSets/CodeSystems by canonical url from ``store``."""

    def resolve(resource_type: str, url: str) -> Json | None:
        if resource_type not in ("ValueSet", "CodeSystem"):
            return None
        bare, _, version = url.partition("|")
        canonicals = getattr(store, "canonicals", None)  # the SQL store's cache (store/canonicals)
        if canonicals is not None:  # one indexed check instead of a search per response
            cached = canonicals.find(resource_type, bare, version or None)
            return dict(cached[0].resource) if cached else None
        params = [("url", bare), ("_count", "1")]
        if version:
            params.append(("version", version))
        found = store.search(resource_type, params).resources
        return dict(found[0]) if found else None

    return resolve


def _score(store: Store, questionnaire: Json, response: Json,
           scorers: Any, plugins: Any = None) -> tuple[ScoreResult | None, list[Issue]]:
    warnings = [_warning(f"The response does not conform to {catalog.canonical(questionnaire)}: "
                         f"{i.message}", code=i.code, expression=i.expression)
                for i in check_response(questionnaire, response, final=True)
                if i.severity in ("error", "fatal")]
    try:
        # with the plugin manager, plugins' scorers count too (their risks raise Flags)
        result = score_response(questionnaire, response, scorers, plugins=plugins,
                                resolve=store_resolver(store))
    except HwFhirError as exc:
        issues = exc.issues or [Issue(exc.message)]
        return None, warnings + [_warning(f"Not scored: {i.message}", expression=i.expression)
                                 for i in issues]
    return result, warnings + [_warning(text, code="business-rule") for text in result.warnings]


def _announce(plugins: Any, store: Store, raised: list[tuple[Json, Json | None]],
              response: Mapping[str, Any], task: Mapping[str, Any] | None,
              services: Any = None) -> None:
    """Call ``risk_raised`` once per newly raised Flag; a failing plugin is logged, never raised."""
    for flag, alert in raised:
        call_each_quietly(plugins, "risk_raised", about=f"Flag/{flag.get('id')}", store=store,
                          flag=flag, response=response, task=task, alert=alert,
                          services=services)


def _definitions_checked_once(store: Store) -> AbstractContextManager[Any]:
    """The SQL store's definition lookups of one scoring share one check for writes."""
    canonicals = getattr(store, "canonicals", None)  # the SQL store's cache (store/canonicals)
    return canonicals.checked_once() if canonicals is not None else nullcontext()


def _record(store: Store, response: Json, questionnaire: Json | None,
            task: Mapping[str, Any] | None, settings: Settings | None, scorers: Any,
            moment: datetime, plugins: Any = None, services: Any = None,
            fresh: bool = False) -> RecordedScores:
    with _definitions_checked_once(store):  # the Questionnaire, then its answers' ValueSets…
        if questionnaire is None:
            try:
                questionnaire = resolve_for(store, response)
            except (NotFound, InvalidInput) as exc:
                warning = _warning(f"Not scored: {exc.message}", code="not-found",
                                   expression="QuestionnaireResponse.questionnaire")
                return RecordedScores(response=response, warnings=(warning,))
        result, warnings = _score(store, questionnaire, response, scorers, plugins)
    if result is None:
        return RecordedScores(response=response, warnings=tuple(warnings))
    calculated = dict(result.response)
    entries: list[Json] = []
    response_entry = _response_entry(response, calculated)
    if response_entry is not None:
        entries.append(response_entry)
    observations = observations_for(questionnaire, calculated, result)
    if len(observations) == 1 and not result.scores:
        observations = []  # nothing coded or calculated: no empty panel in the chart
    # a fresh response's only earlier scoring could be one racing with this one, of the
    # same content: when this one yields nothing, so did that one (nothing to look up)
    existing = {} if fresh and not observations else _ours(store, response["id"])
    obs_entries, retracted = _observation_entries(observations, existing)
    entries += obs_entries
    risk_entries: list[Json] = []
    if result.risks and not response.get("subject"):
        warnings.append(_warning("A risk was raised but the response has no subject: no Flag "
                                 "was recorded", code="required",
                                 expression="QuestionnaireResponse.subject"))
    elif result.risks:
        task = task or answered_task(store, response)
        clinician = first_recipient(store, response, task=task, settings=settings)
        if clinician is None:
            warnings.append(_warning("A risk was raised but no clinician is known and no practice "
                                     "safety contact is configured: the alert has no recipient "
                                     "and is shown as undelivered until acknowledged",
                                     code="incomplete"))
        risk_entries = flag_entries(response, result.risks, clinician=clinician, moment=moment)
    stored, written = _transact(store, entries + risk_entries)
    by_id = {(r.get("resourceType"), r.get("id")): r for r in stored}
    current = {o["id"]: by_id.get(("Observation", o["id"])) or existing[o["id"]]
               for o in observations}
    # flag_entries pairs them: the Flag of each risk, then its alert
    written_risks = stored[len(entries):]
    flags, alerts = written_risks[0::2], written_risks[1::2]
    raised = [(flag, alert) for flag, alert, new in
              zip(flags, alerts, written[len(entries)::2], strict=True) if new]
    recorded = RecordedScores(
        response=by_id.get(("QuestionnaireResponse", response["id"]), response),
        result=result,
        observations=tuple(current[o["id"]] for o in observations),
        retracted=tuple(by_id.get(("Observation", o["id"]), o) for o in retracted),
        flags=tuple(flags),
        alerts=tuple(alerts),
        raised=tuple(flag for flag, _ in raised),
        warnings=tuple(warnings),
        crisis=_crisis_for(store, response, settings) if result.risks else None,
        written=sum(written),
    )
    if plugins is not None and raised:
        _announce(plugins, store, raised, recorded.response, task, services)
    return recorded


def _crisis_for(store: Store, response: Mapping[str, Any],
                settings: Settings | None) -> CrisisInfo:
    """Return the crisis resources of the response's patient (their country and language)."""
    subject = str((response.get("subject") or {}).get("reference") or "")
    patient = None
    if subject.startswith("Patient/"):
        try:
            patient = store.read("Patient", subject.split("/", 1)[1]).resource
        except NotFound:
            patient = None
    return crisis_resources(settings, language=patient_language(patient) if patient else None,
                            patient=patient)


def record_scores(
    store: Store,
    response: Mapping[str, Any],
    *,
    questionnaire: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    task: Mapping[str, Any] | None = None,
    scorers: list[Scorer] | None = None,
    now: datetime | None = None,
    plugins: Any = None,
    services: Any = None,
    fresh: bool = False,
) -> RecordedScores:
    """Score a stored response and record its Observations, Flags and alerts (see the module).

    ``questionnaire`` is the exact version to score against (else resolved from the
    response); ``task`` the Task it answers (names the clinician to alert); ``scorers``
    as for :func:`~hw_fhir.scoring.score_response`; ``plugins`` the plugin manager
    (``services.plugins``) to announce newly raised Flags to (``risk_raised``, which also
    gets ``services`` when given). ``fresh``: the caller created the response just now
    (its first version) and scores it for the first time, so no earlier scoring can have
    left Observations to amend or retract; a response that yields none is then scored
    without looking for them. A
    concurrent change of the response or its Observations is retried with the stored
    versions.
    """
    if not isinstance(response, Mapping) or response.get("resourceType") != "QuestionnaireResponse":
        raise InvalidInput("record_scores needs a QuestionnaireResponse")
    if not response.get("id"):
        raise InvalidInput("The QuestionnaireResponse has no id: store it before scoring it")
    moment = now_utc(now)
    current = dict(response)
    for attempt in range(_ATTEMPTS):
        status = current.get("status")
        try:
            if status == _RETRACTED:
                return _retract_all(store, current)
            if status not in SCORED_STATUSES:
                return RecordedScores(response=current)
            return _record(store, current, dict(questionnaire) if questionnaire else None, task,
                           settings, scorers, moment, plugins, services,
                           fresh=fresh and attempt == 0)
        except VersionConflict:
            if attempt == _ATTEMPTS - 1:
                raise
            current = store.read("QuestionnaireResponse", current["id"]).resource
    raise AssertionError("unreachable")  # pragma: no cover


def score_quietly(store: Store, response: Mapping[str, Any], **kwargs: Any) -> RecordedScores:
    """Run :func:`record_scores`, turning any failure into a logged warning (never raises).

    For paths where the response is already stored and must not be lost to a
    scoring failure; :func:`rescore_since` catches up later.
    """
    try:
        return record_scores(store, response, **kwargs)
    except Exception:  # noqa: BLE001 - the response is stored; report, log, let the sweep retry
        log.exception("scoring QuestionnaireResponse/%s failed", response.get("id"))
        return RecordedScores(response=response, warnings=(_warning(
            "The response was stored, but recording its scores failed; the error was logged and "
            "scoring will be retried", code="exception"),))


def rescore_since(store: Store, since: str, *, settings: Settings | None = None,
                  now: datetime | None = None, plugins: Any = None) -> list[RecordedScores]:
    """Record the scores of every response changed since ``since`` (a FHIR instant).

    Idempotent, so it can be run again at any time to catch responses whose scoring
    failed when they were written (on any Store). The worker's sweep,
    :func:`hw_fhir.outcomes.sweep.rescore_changes`, does the same in bounded batches
    from a cursor on the SQL store's write sequence.
    """
    found = iter_all(store, "QuestionnaireResponse", [
        ("_lastUpdated", f"ge{since}"), ("status", ",".join((*SCORED_STATUSES, _RETRACTED)))])
    return [score_quietly(store, r, settings=settings, now=now, plugins=plugins) for r in found]
