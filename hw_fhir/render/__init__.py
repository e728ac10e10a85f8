"""Render a Questionnaire for a person: a view model of items, and form fields back to answers.

Nothing here knows about a web framework: :func:`build_form` turns a Questionnaire and
(optionally) a QuestionnaireResponse into :class:`FormView` (items with their widget,
options, current values, errors and enableWhen conditions); :func:`parse_form` turns the
submitted fields (a mapping of name → list of strings, e.g. a werkzeug ``MultiDict``)
back into ``QuestionnaireResponse.item`` plus per-item :class:`~hw_fhir.errors.Issue`\\ s
for what cannot be read (a word where a number was asked...); :func:`prune_disabled`
drops answers that ``enableWhen`` switched off, as the server must do whatever the
browser showed.

Field names
    Every answer field is named ``q:<path>``. A path is the item's ``linkId`` (characters
    other than ``A-Z a-z 0-9 _ -`` percent-encoded), children of a group follow a ``/``
    and an instance of a repeating group carries ``.<n>``: ``q:entry.1/situation``.
    Children of a question (nested under its answer) follow ``/`` too. The free text of
    an ``open-choice`` question is ``q:<path>~other``. Instance numbers may have gaps
    (an instance removed in the browser); instances are kept in number order.

Widgets (``ItemView.widget``)
    ``group``, ``display``, ``string``, ``text`` (textarea), ``integer``, ``decimal``
    (both with ``unit`` from ``questionnaire-unit``), ``slider`` (``itemControl`` slider
    on an integer/decimal with ``minValue``/``maxValue``/``sliderStepValue``: a number
    field the browser upgrades to a slider, so an untouched slider sends nothing),
    ``boolean`` (Yes/No radios), ``radio``, ``select`` (drop-down), ``checkbox``
    (repeating choice), ``date``, ``time``, ``dateTime`` (local date and time, read in
    the person's time zone), ``url``, ``readonly`` (shown, never sent) and
    ``unsupported`` (attachment, reference, quantity: shown as not answerable here).
    A choice is a drop-down with ``itemControl`` ``drop-down`` or more than
    :data:`RADIO_LIMIT` options, radios otherwise; a repeating choice is check boxes.

Items with an SDC ``calculatedExpression`` (scores) are neither shown nor sent: scoring
fills them in. Display text with ``rendering-xhtml`` is sanitised to ``p ol ul li a
strong em b i br`` (links: relative, https, http, tel, mailto); SDC ``itemMedia`` is
returned as :class:`Media` to embed.

Modules: :mod:`.view_model` (the values above), :mod:`.field_names`,
:mod:`.item_display` (widget, limits, unit, extension URLs), :mod:`.options`,
:mod:`.xhtml`, :mod:`.browser_conditions` (enableWhen in the page),
:mod:`.form_builder` (:func:`build_form`), :mod:`.form_parser` (:func:`parse_form`)
and :mod:`.pruning` (:func:`prune_disabled`). The form model they share with
validation is :class:`hw_fhir.responses.ResponseForm`.
"""

from __future__ import annotations

from .field_names import FIELD_PREFIX, OTHER_SUFFIX, field_id
from .form_builder import build_form
from .form_parser import parse_form
from .item_display import (
    CALCULATED,
    ITEM_CONTROL,
    ITEM_MEDIA,
    MAX_VALUE,
    MIN_VALUE,
    RADIO_LIMIT,
    RENDERING_XHTML,
    SLIDER_STEP,
    UNIT,
    item_text,
)
from .pruning import prune_disabled
from .view_model import (
    Condition,
    FormError,
    FormView,
    Instance,
    ItemView,
    Media,
    Option,
    ParsedForm,
)
from .xhtml import sanitize_xhtml

__all__ = [
    "FIELD_PREFIX",
    "OTHER_SUFFIX",
    "RADIO_LIMIT",
    "ITEM_CONTROL",
    "SLIDER_STEP",
    "UNIT",
    "MIN_VALUE",
    "MAX_VALUE",
    "RENDERING_XHTML",
    "ITEM_MEDIA",
    "CALCULATED",
    "Option",
    "Media",
    "Condition",
    "ItemView",
    "Instance",
    "FormError",
    "FormView",
    "ParsedForm",
    "build_form",
    "parse_form",
    "prune_disabled",
    "sanitize_xhtml",
    "item_text",
    "field_id",
]
