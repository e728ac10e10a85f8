"""The activity library in the store: load the shipped catalog, clone, edit, publish, retire.

Activities are Questionnaires named by their canonical ``url|version``; Tasks point at
that canonical, so a version that has been published (``status`` ``active``) is never
changed in place and old responses keep their meaning.

* :mod:`.catalog_load` — :func:`load_catalog` writes the shipped catalog
  (:mod:`hw_fhir.catalog`) into a store, idempotently: a Questionnaire whose
  ``url|version`` is already stored is left as it is.
* :mod:`.lookup` — :func:`resolve_questionnaire`, :func:`clinician_system`,
  :func:`clinician_questionnaires`, :func:`questionnaire_titles`: finding Questionnaires.
* :mod:`.drafts` — :func:`clone_questionnaire` copies any activity into a clinician's own
  draft with a new url in the clinician's namespace
  (``http://hw-fhir.org/fhir/clinician/<practitioner-id>/Questionnaire/<slug>``),
  ``version`` ``1.0.0`` and ``derivedFrom`` = the source canonical. The clone also
  carries an ``identifier`` whose system is the clinician's namespace
  (:func:`clinician_system`), so ``Questionnaire?identifier=<system>|`` lists a
  clinician's own activities. :func:`edit_draft` replaces the content of a ``draft`` (and
  only a draft); :func:`new_version` starts the next draft version of a clinician's own
  activity. :func:`publish` makes a draft ``active``; :func:`retire` makes it ``retired``.
* :mod:`.checks` — :func:`check_questionnaire`: every write is checked first, so a
  Questionnaire cannot be broken by an edit.
* :mod:`.item_edits` — the pure helpers :func:`find_item`, :func:`replace_item`,
  :func:`add_item`, :func:`remove_item` and :func:`set_answer_options` edit a
  Questionnaire dict (returning a changed copy) for :func:`edit_draft`.
"""

from __future__ import annotations

from .catalog_load import CatalogLoad, load_catalog
from .checks import check_questionnaire
from .drafts import (
    check_title_free,
    clone_questionnaire,
    distinct_title,
    edit_draft,
    new_version,
    publish,
    retire,
)
from .item_edits import add_item, find_item, remove_item, replace_item, set_answer_options
from .lookup import (
    CLINICIAN_BASE,
    clinician_questionnaires,
    clinician_system,
    questionnaire_titles,
    resolve_questionnaire,
)

__all__ = [
    "CLINICIAN_BASE",
    "CatalogLoad",
    "load_catalog",
    "resolve_questionnaire",
    "clinician_system",
    "clinician_questionnaires",
    "questionnaire_titles",
    "check_questionnaire",
    "clone_questionnaire",
    "distinct_title",
    "check_title_free",
    "new_version",
    "edit_draft",
    "publish",
    "retire",
    "find_item",
    "replace_item",
    "add_item",
    "remove_item",
    "set_answer_options",
]
