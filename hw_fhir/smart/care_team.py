"""Who are "my patients": the access policy for ``user/`` scopes (``HW_FHIR_USER_ACCESS``).

* ``practice`` (default): a ``user/`` scope reaches every patient of the installation,
  as a practice-wide EHR login does.
* ``my-patients``: a ``user/`` scope of a Practitioner (the token's ``fhirUser``) reaches
  only the patients it cares for — those naming it as ``generalPractitioner``, those
  whose homework (``Task.requester``) it assigned, and those whose care plans
  (``CarePlan.author``, this server's care team) it wrote. Everything in other
  patients' compartments is then out of reach for reads, searches, includes and writes;
  a token without a Practitioner ``fhirUser`` reaches no patient at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select, union

from ..config import USER_ACCESS_POLICIES, check_user_access
from ..store import schema as S
from ..store.base import iter_all

__all__ = ["USER_ACCESS_POLICIES", "check_user_access", "my_patients"]

def my_patients(store: Any, fhir_user: str | None) -> frozenset[str]:
    """Return the ids of the patients a Practitioner cares for (empty for anyone else)."""
    parts = (fhir_user or "").rstrip("/").split("/")  # "Practitioner/x" or an absolute URL
    rtype, pid = (parts[-2], parts[-1]) if len(parts) >= 2 else ("", "")
    if rtype != "Practitioner" or not pid:
        return frozenset()
    engine = getattr(store, "engine", None)
    if engine is None:  # another Store: the same questions through its search API
        ref = f"Practitioner/{pid}"
        found = {p["id"] for p in iter_all(store, "Patient", [("general-practitioner", ref)])}
        for kind, param in (("Task", "requester"), ("CarePlan", "author")):
            for resource in iter_all(store, kind, [(param, ref)]):
                subject = (resource.get("for") or resource.get("subject") or {}).get("reference", "")
                if subject.startswith("Patient/"):
                    found.add(subject.split("/", 1)[1])
        return frozenset(found)
    r = S.sp_reference
    gp = select(r.c.res_id.label("patient")).where(
        r.c.res_type == "Patient", r.c.param == "general-practitioner",
        r.c.target_type == "Practitioner", r.c.target_id == pid)
    by, of = r.alias("by"), r.alias("of")
    work = select(of.c.target_id.label("patient")).select_from(
        by.join(of, and_(of.c.res_type == by.c.res_type, of.c.res_id == by.c.res_id))).where(
        ((by.c.res_type == "Task") & (by.c.param == "requester"))
        | ((by.c.res_type == "CarePlan") & (by.c.param == "author")),
        by.c.target_type == "Practitioner", by.c.target_id == pid,
        of.c.param == "patient", of.c.target_type == "Patient")
    with engine.connect() as conn:
        return frozenset(row.patient for row in conn.execute(union(gp, work)) if row.patient)
