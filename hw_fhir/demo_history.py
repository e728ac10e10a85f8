"""Ten weeks of realistic history for the demo practice, written through the domain functions.

So that every dashboard, chart, session prep and the panel look like a real caseload
at first open, :func:`load_history` replays ten weeks of homework for the demo
clients — assigned by their clinician, answered (or not) by the client — with the
same functions the app uses (:func:`hw_fhir.assignment.assign`,
:func:`hw_fhir.completion.submit_response`), each at its moment in the past, so the
scores, risk flags and Task states are the ones the product itself derives:

* **Ava** (Dr. Rivera): a weekly PHQ-9 falling from moderately severe to mild, mood
  logs getting brighter, thought records; a missed week explained ("lack of time").
* **Ben** (Dr. Rivera): a weekly PHQ-9 rising from mild to moderately severe; item 9
  answered "several days" in week 5 (a risk flag Dr. Rivera acknowledged) and again
  last week (a risk flag still active); missed homework with reasons (symptoms,
  negative events).
* **Carmen** (Dr. Okafor): mood logs and thought records, a GAD-7 series, one
  exercise not done ("too difficult").

Idempotent: nothing is written when Ava already has a QuestionnaireResponse.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta, timezone
from typing import Any

from . import catalog
from .assignment import Assignment, assign
from .completion import submit_response
from .errors import HwFhirError
from .outcomes import FLAG_DETAIL_EXTENSION, FLAG_RAISED_EXTENSION, acknowledge_flag
from .schedule import Schedule

__all__ = ["load_history", "HISTORY_WEEKS", "PHQ9_SERIES"]

log = logging.getLogger("hw_fhir.demo")

HISTORY_WEEKS = 10
#: PHQ-9 item answers per week (0-3 each, item 9 last), oldest first.
PHQ9_SERIES: dict[str, list[list[int]]] = {
    "pat-ava": [
        [3, 3, 2, 3, 2, 2, 2, 1, 0], [3, 2, 2, 3, 2, 2, 2, 1, 0], [2, 2, 2, 2, 2, 2, 1, 1, 0],
        [2, 2, 2, 2, 1, 2, 1, 1, 0], [2, 2, 1, 2, 1, 1, 1, 1, 0], [2, 1, 1, 2, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 1, 0, 0], [1, 1, 0, 1, 1, 0, 0, 0, 0],
        [1, 0, 0, 1, 1, 0, 0, 0, 0],
    ],
    "pat-ben": [
        [1, 1, 1, 1, 0, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 2, 1, 1, 1, 0, 0],
        [2, 1, 1, 2, 1, 1, 1, 0, 0], [2, 2, 1, 2, 1, 2, 1, 1, 1], [2, 2, 2, 2, 1, 2, 1, 1, 0],
        [2, 2, 2, 2, 2, 2, 1, 1, 0], [2, 2, 2, 3, 2, 2, 2, 1, 0], [3, 2, 2, 3, 2, 2, 2, 1, 0],
        [3, 3, 2, 3, 2, 2, 2, 1, 1],
    ],
}
_GAD7 = [[2, 2, 2, 1, 1, 2, 1], [2, 2, 1, 1, 1, 2, 1], [2, 1, 1, 1, 1, 1, 1],
         [1, 1, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1, 0]]
_PHQ_CODES = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
_THOUGHTS = [
    ("Presentation at work ran over time", "Everyone thinks I'm incompetent", "anxious", 80,
     "My manager asked a good follow-up question and thanked me", "One slide ran long; that is all"),
    ("Friend did not answer my message", "She doesn't want to see me any more", "sad", 70,
     "She was travelling this week", "People get busy; she replied last time within a day"),
    ("Forgot to call my mother back", "I always let people down", "guilty", 65,
     "I called her the next morning and she was fine", "I forgot once; I usually keep in touch"),
]


def _choice(code: str, system: str = "http://loinc.org") -> dict[str, Any]:
    return {"valueCoding": {"system": system, "code": code}}


def _item(link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": list(answers)}


def _phq9(items: list[int]) -> list[dict[str, Any]]:
    return [_item(f"phq9-{n}", _choice(_PHQ_CODES[v])) for n, v in enumerate(items, start=1)]


def _gad7(items: list[int]) -> list[dict[str, Any]]:
    return [_item(f"gad7-{n}", _choice(_PHQ_CODES[v])) for n, v in enumerate(items, start=1)]


def _mood(day: datetime, mood: int, anxiety: int, feeling: str) -> list[dict[str, Any]]:
    return [_item("date", {"valueDate": day.date().isoformat()}),
            _item("mood", {"valueInteger": mood}),
            _item("feelings", _choice(feeling, "http://hw-fhir.org/fhir/CodeSystem/feelings")),
            _item("anxiety", {"valueInteger": anxiety}),
            _item("sleep-hours", {"valueDecimal": 6.5 + mood / 10})]


def _thought(n: int) -> list[dict[str, Any]]:
    situation, thought, emotion, intensity, against, balanced = _THOUGHTS[n % len(_THOUGHTS)]
    return [{"linkId": "entry", "item": [
        _item("situation", {"valueString": situation}),
        _item("automatic-thought", {"valueString": thought}),
        _item("belief-before", {"valueInteger": intensity}),
        _item("emotion", _choice(emotion, "http://hw-fhir.org/fhir/CodeSystem/emotions")),
        _item("emotion-intensity", {"valueInteger": intensity}),
        _item("evidence-against", {"valueString": against}),
        _item("balanced-thought", {"valueString": balanced}),
        _item("belief-balanced", {"valueInteger": max(intensity - 40, 10)}),
        _item("emotion-after", {"valueInteger": max(intensity - 35, 10)}),
    ]}]


def _check_in(reason: str | None, amount: str = "none") -> list[dict[str, Any]]:
    items = [_item("amount-done", _choice(amount, "http://hw-fhir.org/fhir/CodeSystem/amount-done")),
             _item("as-agreed", {"valueBoolean": reason is None})]
    if reason:
        items.append(_item("reason-not-done",
                           _choice(reason, "http://hw-fhir.org/fhir/CodeSystem/reason-not-done")))
    return items


class _Replay:
    """Assign and answer homework at moments in the past, counting what was written."""

    def __init__(self, services: Any, now: datetime) -> None:
        self.services = services
        self.now = now
        self.written = 0
        self.questionnaires = {q["url"]: q for q in catalog.load_questionnaires()}

    def _fix_codes(self, url: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Use the Questionnaire's own answerOption codings (systems) for choice answers."""
        options: dict[str, dict[str, dict[str, Any]]] = {}

        def walk(nodes: list[dict[str, Any]]) -> None:
            for node in nodes:
                for option in node.get("answerOption") or []:
                    coding = option.get("valueCoding")
                    if coding:
                        options.setdefault(node["linkId"], {})[coding.get("code")] = coding
                walk(node.get("item") or [])

        walk(self.questionnaires.get(url, {}).get("item") or [])

        def fix(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for node in nodes:
                node = dict(node)
                if "item" in node:
                    node["item"] = fix(node["item"])
                if "answer" in node:
                    known = options.get(node["linkId"], {})
                    node["answer"] = [{"valueCoding": known[a["valueCoding"]["code"]]}
                                      if "valueCoding" in a and a["valueCoding"]["code"] in known
                                      else a for a in node["answer"]]
                out.append(node)
            return out

        return fix(items)

    def homework(self, patient: str, practitioner: str, name: str, due: datetime, *,
                 answers: list[dict[str, Any]] | None, done_at: datetime | None = None,
                 instructions: str = "", channel: str = "email") -> None:
        """Assign ``name`` three days before ``due``; answer it (``answers``) or leave it."""
        url = f"{catalog.CANONICAL_BASE}/Questionnaire/{name}"
        zone = "UTC"
        result = assign(
            self.services.store,
            Assignment(patient=f"Patient/{patient}", practitioner=f"Practitioner/{practitioner}",
                       activity=url,
                       schedule=Schedule(frequency="once", start=due.date(), timezone=zone,
                                         time_of_day=time(due.hour, due.minute)),
                       instructions=instructions or "As we agreed in session.",
                       reminder_channel=channel),
            events=self.services.events, now=due - timedelta(days=3))
        self.written += len(result.tasks)
        task = result.task
        assert task is not None
        if answers is None:
            return
        response = {"resourceType": "QuestionnaireResponse",
                    "item": self._fix_codes(url, answers)}
        submit_response(self.services.store, task["id"], response, patient=f"Patient/{patient}",
                        events=self.services.events, now=done_at or due - timedelta(hours=20))
        self.written += 2


def _has_history(services: Any) -> bool:
    found = services.store.search("QuestionnaireResponse",
                                  [("subject", "Patient/pat-ava"), ("_count", "1")])
    return bool(found.matches)


def load_history(services: Any, *, now: datetime | None = None) -> int:
    """Write the demo clients' ten weeks of homework; return how many resources were written."""
    if _has_history(services):
        return 0
    moment = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    start = moment - timedelta(weeks=HISTORY_WEEKS)
    replay = _Replay(services, moment)
    try:
        _ava_and_ben(replay, start)
        _carmen(replay, start)
        _date_flags_by_their_responses(services)
        _acknowledge_first_flag(services, moment)
    except HwFhirError as exc:
        log.warning("Demo history stopped early: %s", exc.message)
    return replay.written


def _ava_and_ben(replay: _Replay, start: datetime) -> None:
    missed = {("pat-ava", 3): "lack-of-time", ("pat-ben", 4): "symptoms",
              ("pat-ben", 7): "negative-events", ("pat-ben", 8): "symptoms"}
    for week in range(HISTORY_WEEKS):
        monday = start + timedelta(weeks=week)
        for patient in ("pat-ava", "pat-ben"):
            items = PHQ9_SERIES[patient][week]
            trend = week if patient == "pat-ava" else HISTORY_WEEKS - week
            due = monday.replace(hour=19) + timedelta(days=6)
            replay.homework(patient, "dr-rivera", "phq-9", due, answers=_phq9(items),
                            instructions="Please fill this in before our session.")
            reason = missed.get((patient, week))
            log_due = monday.replace(hour=20) + timedelta(days=2)
            if reason:
                replay.homework(patient, "dr-rivera", "mood-log", log_due, answers=None,
                                instructions="Rate your mood each evening.")
                replay.homework(patient, "dr-rivera", "engagement-check-in",
                                log_due + timedelta(days=2), answers=_check_in(reason),
                                instructions="How did the mood log go this week?")
                continue
            replay.homework(patient, "dr-rivera", "mood-log", log_due,
                            answers=_mood(log_due, 3 + trend // 2, max(8 - trend // 2, 2),
                                          "hopeful" if trend > 5 else "sad"),
                            instructions="Rate your mood each evening.")
            if week % 2 == 0:
                replay.homework(patient, "dr-rivera", "thought-record",
                                monday.replace(hour=20) + timedelta(days=4),
                                answers=_thought(week // 2),
                                instructions="Catch one upsetting thought this week and test it.")


def _carmen(replay: _Replay, start: datetime) -> None:
    for week in range(HISTORY_WEEKS):
        monday = start + timedelta(weeks=week)
        due = monday.replace(hour=18) + timedelta(days=3)
        if week == 6:
            replay.homework("pat-carmen", "dr-okafor", "thought-record", due, answers=None,
                            channel="sms")
            replay.homework("pat-carmen", "dr-okafor", "engagement-check-in",
                            due + timedelta(days=2), answers=_check_in("too-difficult", "some"),
                            channel="sms")
        else:
            replay.homework("pat-carmen", "dr-okafor", "mood-log", due,
                            answers=_mood(due, 4 + week // 3, 6 - week // 3, "calm"),
                            channel="sms")
        if week % 2 == 1:
            replay.homework("pat-carmen", "dr-okafor", "gad-7", due + timedelta(days=3),
                            answers=_gad7(_GAD7[week // 2]), channel="sms")


#: The demo clients whose homework the replay writes.
_PATIENTS = ("pat-ava", "pat-ben", "pat-carmen")


def _date_flags_by_their_responses(services: Any) -> None:
    """Start each replayed risk Flag when its response was answered, not when the replay ran.

    Scoring stamps a new Flag with the time it scores (``flag-raised``); the replay scores ten
    weeks of answers in one go, so without this every historical Flag would say it was
    raised today, days after the answer ("flagged later"), and an older store's Flags
    would start today (the acknowledged one ending before it started).
    """
    store = services.store
    for patient in _PATIENTS:
        for flag in store.search("Flag", [("subject", f"Patient/{patient}"),
                                          ("_count", "100")]).resources:
            source = next((e.get("valueReference", {}).get("reference", "")
                           for e in flag.get("extension") or []
                           if e.get("url") == FLAG_DETAIL_EXTENSION), "")
            if not source.startswith("QuestionnaireResponse/"):
                continue
            answered = store.read("QuestionnaireResponse", source.split("/", 1)[1]).resource
            authored = answered.get("authored")
            start = (flag.get("period") or {}).get("start")
            late = [e for e in flag.get("extension") or []
                    if e.get("url") == FLAG_RAISED_EXTENSION and authored
                    and _instant(authored) < _instant(e["valueDateTime"])]
            if authored and start and (_instant(authored) < _instant(start) or late):
                # in the story each answer was scored as it arrived: raised when answered
                updated = {k: v for k, v in flag.items() if k != "meta"}
                updated["period"] = dict(flag["period"], start=authored)
                updated["extension"] = [dict(e, valueDateTime=authored) if e in late else e
                                        for e in flag["extension"]]
                store.update(updated)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _acknowledge_first_flag(services: Any, now: datetime) -> None:
    """Dr. Rivera acknowledged Ben's first risk flag (the later one stays active)."""
    flags = sorted(services.store.search("Flag", [("subject", "Patient/pat-ben"),
                                                  ("status", "active")]).resources,
                   key=lambda flag: _instant(flag["period"]["start"]))
    if len(flags) >= 2:
        acknowledge_flag(services.store, flags[0]["id"], "Practitioner/dr-rivera",
                         "Called Ben the same evening: no plan or intent; safety plan reviewed.",
                         now=now - timedelta(weeks=5, days=-1))
