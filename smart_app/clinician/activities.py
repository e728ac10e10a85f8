"""A clinician's own activities: clone, edit items, preview, publish (views only)."""

from __future__ import annotations

from typing import Any

from flask import request

from hw_fhir import library as lib
from hw_fhir import item_settings, review
from hw_fhir.errors import BusinessRuleError, Conflict, Forbidden, HwFhirError, InvalidInput
from hw_fhir.store.base import iter_all
from hw_fhir.translation import apply_translation_form, translation_rows

from .base import bp, clinician, go, now, page, patient_or_404, store

__all__ = ["my_library", "clone", "editor", "publish", "retire", "new_version"]


def _patient() -> dict[str, Any] | None:
    pid = request.args.get("patient") or request.form.get("patient") or None
    return patient_or_404(pid) if pid else None


def _own(qid: str) -> tuple[dict[str, Any], str]:
    stored = store().read("Questionnaire", qid)
    questionnaire = stored.resource
    prefix = lib.clinician_system(clinician().practitioner) + "/"
    if not str(questionnaire.get("url", "")).startswith(prefix):
        raise Forbidden("You can only change your own activities. Make your own copy first.")
    return questionnaire, stored.version_id


def _without_publish(form: dict[str, list[str]]) -> dict[str, list[str]]:
    """The editor form with "Save and publish" read as "Save" by the item editor."""
    return {**form, "action": ["save"]} if form.get("action") == ["publish"] else form


def _issues(exc: HwFhirError) -> list[str]:
    messages = []
    for issue in exc.issues:
        where = (issue.expression or "").replace("Questionnaire.", "")
        messages.append(
            f"{issue.message}" + (f" ({where})" if where and where not in issue.message else "")
        )
    return messages or [exc.message]


@bp.get("/library")
def my_library() -> Any:
    """List the clinician's own activities, and the library to copy from."""
    who = clinician()
    own = lib.clinician_questionnaires(store(), who.practitioner)
    text = request.args.get("q", "").strip()[:100]
    entries = review.filter_library(
        review.library_entries(
            q
            for q in iter_all(store(), "Questionnaire", [("status", "active")])
            if not str(q.get("url", "")).startswith(lib.clinician_system(who.practitioner) + "/")
        ),
        text=text,
    )
    return page(
        "clinician/my_library.html",
        patient=_patient(),
        nav_active="library",
        own=own,
        entries=entries,
        q=text,
    )


@bp.post("/library/clone")
def clone() -> Any:
    """Copy a library activity into the clinician's own draft and open the editor."""
    source = request.form.get("source", "")
    title = (request.form.get("title") or "").strip() or None
    patient = _patient()
    made = lib.clone_questionnaire(
        store(), source, practitioner=clinician().practitioner, title=title, now=now()
    )
    return go(
        "clinician.editor",
        qid=made["id"],
        notice="cloned",
        patient=patient["id"] if patient else None,
    )


@bp.route("/library/<qid>/edit", methods=["GET", "POST"])
def editor(qid: str) -> Any:
    """Edit a draft: title, items (add, remove, reorder), answer options, required, help text."""
    questionnaire, version = _own(qid)
    patient = _patient()
    errors: list[str] = []
    shown = questionnaire
    form: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        form = request.form.to_dict(flat=False)
        expected = request.form.get("version", version)
        action = request.form.get("action", "save")
        try:
            shown = review.apply_item_editor(questionnaire, _without_publish(form))
            shown = apply_translation_form(shown, form, "es")
            edited = item_settings.apply_item_settings(shown, form)
            lib.check_title_free(store(), edited.get("title"), qid)
        except InvalidInput as exc:
            errors, status = _issues(exc), 400
        else:
            shown = edited
            try:
                saved = lib.edit_draft(store(), qid, edited, if_match=f'W/"{expected}"', now=now())
                if action == "publish":  # Publish saves the form first: nothing is lost
                    lib.publish(store(), qid, if_match=f'W/"{saved["meta"]["versionId"]}"',
                                now=now())
            except (InvalidInput, BusinessRuleError, Conflict) as exc:
                errors, status = _issues(exc), exc.status
                questionnaire, version = _own(qid)  # the draft may be saved: edit from it
            else:
                if action == "publish":
                    return go("clinician.my_library", notice="published",
                              patient=patient["id"] if patient else None)
                return go(
                    "clinician.editor",
                    qid=qid,
                    notice="saved",
                    patient=patient["id"] if patient else None,
                    _anchor="new-item" if action == "add" else None,
                )
    return page(
        "clinician/editor.html",
        status,
        patient=patient,
        nav_active="library",
        questionnaire=shown,
        stored=questionnaire,
        version=version,
        errors=errors,
        rows=review.editor_rows(shown),
        translations=translation_rows(shown, "es"),
        settings=item_settings.item_settings(shown, typed=form if errors else None),
        operators=item_settings.OPERATORS,
        media_types=item_settings.MEDIA_TYPES,
        types=review.EDITABLE_TYPES,
        draft=questionnaire.get("status") == "draft",
    )


def _lifecycle(qid: str, action: Any, notice: str) -> Any:
    _, version = _own(qid)
    patient = _patient()
    action(store(), qid, if_match=f'W/"{request.form.get("version", version)}"', now=now())
    return go("clinician.my_library", notice=notice, patient=patient["id"] if patient else None)


@bp.post("/library/<qid>/publish")
def publish(qid: str) -> Any:
    """Publish a draft: it becomes assignable."""
    return _lifecycle(qid, lib.publish, "published")


@bp.post("/library/<qid>/retire")
def retire(qid: str) -> Any:
    """Retire an activity: it can no longer be assigned (homework already assigned stays)."""
    return _lifecycle(qid, lib.retire, "retired")


@bp.post("/library/<qid>/new-version")
def new_version(qid: str) -> Any:
    """Start the next draft version of a published activity and open the editor."""
    _own(qid)
    patient = _patient()
    made = lib.new_version(store(), qid, now=now())
    return go(
        "clinician.editor",
        qid=made["id"],
        notice="new-version",
        patient=patient["id"] if patient else None,
    )
