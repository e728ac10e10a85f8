"""What a clinician looks at: view models for the dashboard, review, session prep and library.

Pure read-side logic over FHIR JSON and the store; no web framework. The clinician pages
(:mod:`smart_app.clinician`) render these values and call the domain modules for writes
(sharing scores with a patient is :func:`hw_fhir.sharing.share_scores`). One module per
screen:

* :mod:`.dashboard` — :func:`patient_dashboard`: active risk Flags, active assignments and
  plans (status, next due, last reminder), adherence and engagement, measure scores with
  severity, change labels and charts, recent responses; :func:`already_assigned`: the
  active assignments of one activity, for the assign page.
* :mod:`.response_page` — :func:`response_view`: a completed response readably: question
  and answer side by side, calculated scores, the band, answers that raised a risk
  highlighted.
* :mod:`.compare` — :func:`compare_responses`: two completions of the same activity side
  by side.
* :mod:`.next_session` — :func:`session_prep`: everything since the last session, with
  prompts for the review conversation (a win, what was done, what was hard, what was
  learned, what next).
* :mod:`.patient_panel` — :func:`panel`: a clinician's patients, those needing attention
  first.
* :mod:`.library_view` — :func:`library_entries`, :func:`filter_library`: browse the
  library; :func:`preview_rows`: a Questionnaire's items as the patient will meet them.
* :mod:`.tailoring` — :func:`assign_defaults`: tailor an assignment with sensible defaults.
* :mod:`.item_editor` — :func:`editor_rows`, :func:`apply_item_editor`: the simple item
  editor of a clinician's own draft (text, type, required, help text, answer options; add,
  move, remove); the result is checked and stored by :func:`hw_fhir.library.edit_draft`.

Shared by several screens: :mod:`.formatting` (the patient's time zone, titles, labels),
:mod:`.answers` (answers as text, help and score items), :mod:`.measures` (measure
histories and bands) and :mod:`.summaries` (risk flags and submitted responses).
"""

from __future__ import annotations

from ..sharing import SHARE_SCORES_EXTENSION, scores_shared
from .answers import answer_text
from .compare import CompareRow, Comparison, compare_responses
from .dashboard import (
    AssignmentRow,
    MeasureRow,
    PatientDashboard,
    already_assigned,
    patient_dashboard,
)
from .formatting import TIMEZONE_EXTENSION, outcome_label, patient_zone
from .item_editor import EDITABLE_TYPES, apply_item_editor, editor_rows
from .library_view import LibraryEntry, PreviewRow, filter_library, library_entries, preview_rows
from .next_session import (
    REVIEW_PROMPTS,
    Prompt,
    SessionPrep,
    default_session_date,
    session_prep,
)
from .patient_panel import PanelEntry, panel
from .response_page import AnswerRow, ResponseView, response_view
from .summaries import FlagRow, ResponseSummary
from .tailoring import MEASURE_INSTRUCTIONS, AssignDefaults, assign_defaults

__all__ = [
    "TIMEZONE_EXTENSION",
    "REVIEW_PROMPTS",
    "MEASURE_INSTRUCTIONS",
    "FlagRow",
    "AssignmentRow",
    "MeasureRow",
    "ResponseSummary",
    "PatientDashboard",
    "AnswerRow",
    "ResponseView",
    "CompareRow",
    "Comparison",
    "Prompt",
    "SessionPrep",
    "PanelEntry",
    "LibraryEntry",
    "AssignDefaults",
    "PreviewRow",
    "SHARE_SCORES_EXTENSION",
    "patient_zone",
    "scores_shared",
    "patient_dashboard",
    "already_assigned",
    "response_view",
    "compare_responses",
    "session_prep",
    "default_session_date",
    "panel",
    "library_entries",
    "filter_library",
    "assign_defaults",
    "preview_rows",
    "answer_text",
    "outcome_label",
    "EDITABLE_TYPES",
    "editor_rows",
    "apply_item_editor",
]
