"""QuestionnaireResponses against their Questionnaire: validation, enableWhen, answers.

The package re-exports its public API; each module holds one concept:

* :mod:`.validation` — :func:`check_response` / :func:`validate_response` (what is
  checked is listed there);
* :mod:`.questionnaire_checks` — :func:`check_questionnaire`, problems of the
  Questionnaire itself;
* :mod:`.form` — the form model shared with the renderer: :class:`ResponseForm` (the
  response as a tree of :class:`ResponseNode`, with enableWhen evaluated) and
  :func:`enabled_items`;
* :mod:`.definitions` — extension URLs, item labels, the linkId index, contained
  ValueSets, :func:`canonical_of`;
* :mod:`.answer_values` — answer ``value[x]`` shapes, comparison, limits and display;
* :mod:`.answers` — :func:`flatten_answers`.
"""

from __future__ import annotations

from .answers import flatten_answers
from .definitions import (
    CALCULATED_EXPRESSION,
    INITIAL_EXPRESSION,
    MAX_DECIMAL_PLACES,
    MAX_QUANTITY,
    MAX_VALUE,
    MIN_LENGTH,
    MIN_QUANTITY,
    MIN_VALUE,
    SDC,
    canonical_of,
    item_label,
)
from .form import ResponseForm, ResponseNode, enabled_items
from .questionnaire_checks import check_questionnaire
from .validation import check_response, validate_response

__all__ = [
    "check_response",
    "validate_response",
    "check_questionnaire",
    "enabled_items",
    "flatten_answers",
    "canonical_of",
    "item_label",
    "ResponseForm",
    "ResponseNode",
    "SDC",
    "CALCULATED_EXPRESSION",
    "INITIAL_EXPRESSION",
    "MIN_QUANTITY",
    "MAX_QUANTITY",
    "MIN_VALUE",
    "MAX_VALUE",
    "MIN_LENGTH",
    "MAX_DECIMAL_PLACES",
]
