"""Outcomes: scores recorded as Observations on every path, measurement-based care, safety.

>>> recorded = record_scores(store, response)              # doctest: +SKIP
>>> recorded.observations, recorded.flags, recorded.crisis # doctest: +SKIP
>>> patient_progress(store, "Patient/pat-ava")["phq-9"]    # doctest: +SKIP

Scoring itself (pure functions) is :mod:`hw_fhir.scoring`; this package stores what
it finds.
"""

from .crisis import (
    DEFAULT_CONTACTS,
    CrisisContact,
    CrisisInfo,
    crisis_resources,
    with_crisis_notes,
)
from .escalation import (
    UndeliveredAlert,
    alert_chain,
    undelivered_alerts,
)
from .listener import score_on_completion, scores_for_written, subscribe
from .progress import (
    MEASURES,
    PROGRESS_OPERATION,
    Measure,
    measure_history,
    measure_progress,
    patient_progress,
    progress_parameters,
)
from .record import (
    SCORED_STATUSES,
    RecordedScores,
    record_scores,
    rescore_since,
    resolve_for,
    score_quietly,
)
from .safety import (
    ACKNOWLEDGEMENT_EXTENSION,
    ALERT_TEXT,
    COMMUNICATION_CATEGORY_SYSTEM,
    FLAG_CATEGORY_SYSTEM,
    FLAG_DETAIL_EXTENSION,
    FLAG_RAISED_EXTENSION,
    LOCAL_FLAG_CATEGORY_SYSTEM,
    RISK_ALERT_SYSTEM,
    RISK_FLAG_SYSTEM,
    RISK_SYSTEM,
    acknowledge_flag,
    assigning_practitioner,
    flags_for_response,
)
from .sweep import RescoreRun, rescore_changes

__all__ = [
    "ACKNOWLEDGEMENT_EXTENSION",
    "ALERT_TEXT",
    "COMMUNICATION_CATEGORY_SYSTEM",
    "DEFAULT_CONTACTS",
    "FLAG_CATEGORY_SYSTEM",
    "FLAG_DETAIL_EXTENSION",
    "FLAG_RAISED_EXTENSION",
    "LOCAL_FLAG_CATEGORY_SYSTEM",
    "MEASURES",
    "PROGRESS_OPERATION",
    "RISK_ALERT_SYSTEM",
    "RISK_FLAG_SYSTEM",
    "RISK_SYSTEM",
    "SCORED_STATUSES",
    "CrisisContact",
    "CrisisInfo",
    "Measure",
    "RecordedScores",
    "RescoreRun",
    "UndeliveredAlert",
    "alert_chain",
    "undelivered_alerts",
    "acknowledge_flag",
    "assigning_practitioner",
    "crisis_resources",
    "with_crisis_notes",
    "flags_for_response",
    "measure_history",
    "measure_progress",
    "patient_progress",
    "progress_parameters",
    "record_scores",
    "rescore_changes",
    "rescore_since",
    "resolve_for",
    "score_quietly",
    "score_on_completion",
    "scores_for_written",
    "subscribe",
]
