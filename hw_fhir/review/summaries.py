"""What the dashboard and session prep both list: active risk flags and submitted responses.

* :func:`flag_rows` — a patient's active risk Flags, newest first.
* :func:`response_summaries` — a patient's latest submitted responses (one search).
* :func:`responses_of_tasks` — the responses of completed Tasks already read.

Each response comes with its score, band and the previous response to the same activity.
:data:`HOMEWORK_PLANS` is the search parameter that finds a patient's homework CarePlans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import catalog
from ..adherence import TaskFacts
from ..assignment import parse_instant
from ..library import questionnaire_titles
from ..outcomes import FLAG_RAISED_EXTENSION
from ..store.base import Store, iter_all
from .formatting import activity_title
from .measures import response_total

__all__ = [
    "HOMEWORK_PLANS",
    "FlagRow",
    "ResponseSummary",
    "flag_rows",
    "response_summaries",
    "responses_of_tasks",
]

#: The CarePlan search parameter of homework plans (assigned plans and pathways).
HOMEWORK_PLANS = ("category", f"{catalog.CODE_SYSTEM_BASE}/care-plan-category|homework")
_FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"


@dataclass(frozen=True)
class FlagRow:
    """An active risk Flag: what, since when, and the response that raised it.

    ``raised`` is the Flag's ``period.start``: when the patient answered; ``flagged`` when
    hw-fhir raised it (later for a response synced or scored late).
    """

    id: str
    text: str
    category: str
    raised: str | None
    response: str | None
    flagged: str | None = None

    @property
    def scored_late(self) -> bool:
        """Whether the Flag was raised more than 15 minutes after the patient answered."""
        return _seconds_between(self.raised, self.flagged) > 900


@dataclass(frozen=True)
class ResponseSummary:
    """A submitted response in a list: what, when, its score, and the one before it."""

    id: str
    title: str
    authored: str | None
    questionnaire: str
    score: float | None = None
    band: str | None = None
    previous: str | None = None


def flag_rows(store: Store, patient_ref: str) -> list[FlagRow]:
    """Return a patient's active risk Flags, the newest first."""
    rows = []
    for flag in iter_all(store, "Flag", [("patient", patient_ref), ("status", "active")]):
        response = None
        for ext in flag.get("extension") or []:
            if ext.get("url") == _FLAG_DETAIL:
                ref = (ext.get("valueReference") or {}).get("reference")
                if isinstance(ref, str) and ref.startswith("QuestionnaireResponse/"):
                    response = ref
        code = flag.get("code") or {}
        category = next(
            (
                c.get("display") or c.get("code")
                for cat in flag.get("category") or []
                for c in cat.get("coding") or []
                if c.get("system") != "http://terminology.hl7.org/CodeSystem/flag-category"
            ),
            "Risk",
        )
        text = code.get("text") or next(
            (c.get("display") for c in code.get("coding") or [] if c.get("display")),
            "A risk was raised",
        )
        rows.append(
            FlagRow(
                id=flag["id"],
                text=str(text),
                category=str(category),
                raised=(flag.get("period") or {}).get("start"),
                response=response,
                flagged=next((e.get("valueDateTime") for e in flag.get("extension") or []
                              if e.get("url") == FLAG_RAISED_EXTENSION), None),
            )
        )
    return sorted(rows, key=lambda r: _timestamp(r.raised), reverse=True)


def _timestamp(value: str | None) -> float:
    try:
        return parse_instant(value).timestamp() if value and "T" in value else 0.0
    except ValueError:
        return 0.0


def _seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return _timestamp(end) - _timestamp(start)


def response_summaries(store: Store, patient_ref: str, limit: int) -> list[ResponseSummary]:
    """Return a patient's latest ``limit`` submitted responses (not engagement check-ins)."""
    found = store.search(
        "QuestionnaireResponse",
        [
            ("patient", patient_ref),
            ("status", "completed,amended"),
            ("_sort", "-authored"),
            ("_count", str(limit * 3)),
        ],
    ).resources
    found = [
        r
        for r in found
        if (r.get("questionnaire") or "").split("|")[0] != catalog.ENGAGEMENT_CHECK_IN_URL
    ]
    titles = questionnaire_titles(store, (r.get("questionnaire") or "" for r in found))
    out: list[ResponseSummary] = []
    for n, response in enumerate(found[:limit]):
        ref = response.get("questionnaire") or ""
        url = ref.split("|")[0]
        previous = next(
            (
                r["id"]
                for r in found[n + 1 :]
                if (r.get("questionnaire") or "").split("|")[0] == url
            ),
            None,
        )
        score, band = response_total(response)
        out.append(
            ResponseSummary(
                id=response["id"],
                title=activity_title(titles.get(ref) or titles.get(url)),
                authored=response.get("authored"),
                questionnaire=ref,
                score=score,
                band=band,
                previous=previous,
            )
        )
    return out


def responses_of_tasks(
    store: Store, tasks: Sequence[TaskFacts], limit: int
) -> list[ResponseSummary]:
    """Return the latest responses of completed Tasks, each with the one before it.

    The Tasks are at hand already: their ``output`` names the responses, so only those
    few responses are read (by id), and "the one before" is found however far back it is.
    """
    done: list[tuple[str, str, str]] = []  # (finished, canonical, response id)
    for task in tasks:
        if task.status != "completed":
            continue
        ref = task.response or ""
        canonical = task.canonical or ""
        if (
            not ref.startswith("QuestionnaireResponse/")
            or canonical.split("|")[0] == catalog.ENGAGEMENT_CHECK_IN_URL
        ):
            continue
        finished = task.finished or task.modified or ""
        done.append((str(finished), canonical, ref.split("/", 1)[1]))
    done.sort(key=lambda item: item[0], reverse=True)
    top = done[:limit]
    if not top:
        return []
    found = {
        r["id"]: r
        for r in store.search(
            "QuestionnaireResponse",
            [("_id", ",".join(rid for _, _, rid in top)), ("_count", str(len(top)))],
        ).resources
    }
    titles = questionnaire_titles(store, (canonical for _, canonical, _ in top))
    out = []
    for n, (finished, canonical, rid) in enumerate(top):
        response = found.get(rid)
        if response is None:
            continue
        url = canonical.split("|")[0]
        previous = next((other for _, c, other in done[n + 1 :] if c.split("|")[0] == url), None)
        score, band = response_total(response)
        out.append(
            ResponseSummary(
                id=rid,
                title=activity_title(titles.get(canonical) or titles.get(url)),
                authored=response.get("authored") or finished,
                questionnaire=canonical,
                score=score,
                band=band,
                previous=previous,
            )
        )
    return out
