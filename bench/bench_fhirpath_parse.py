"""Python calls of a FHIRPath syntax check plus the first scoring of catalog instruments (caches empty).

    .venv/bin/python bench/bench_fhirpath_parse.py

Load-independent: counts Python function calls (cProfile) of ``check_expressions`` +
``score_response`` with the parse caches emptied, then of a later run (parsed forms cached).
"""
from __future__ import annotations

import cProfile
import json
import os
import pstats
from pathlib import Path
import hw_fhir
from hw_fhir.scoring import score_response, check_expressions
from hw_fhir.scoring import fhirpath
C = Path(hw_fhir.__file__).parent / "catalog" / "questionnaires"
F = Path(__file__).resolve().parent.parent / "fixtures" / "responses"
pairs = [("phq-9", "phq-9-moderate-item9"), ("gad-7", "gad-7-mild"), ("pcl-5", "pcl-5-probable"), ("phq-2", "phq-2-positive")]
def clear():
    for name in ("_compiled", "syntax_error", "_parsed"):
        f = getattr(fhirpath, name, None)
        if hasattr(f, "cache_clear"): f.cache_clear()
score_response(json.loads((C / "phq-9.json").read_text()), json.loads((F / "phq-9-moderate-item9.json").read_text()))  # imports warm
for q, r in pairs:
    qj, rj = json.loads((C / f"{q}.json").read_text()), json.loads((F / f"{r}.json").read_text())
    clear()
    p = cProfile.Profile(); p.enable(); check_expressions(qj); score_response(qj, rj); p.disable()
    first = sum(row[1] for row in pstats.Stats(p).stats.values())
    p = cProfile.Profile(); p.enable(); check_expressions(qj); score_response(qj, rj); p.disable()
    later = sum(row[1] for row in pstats.Stats(p).stats.values())
    print(f"{q}: Python calls, check + first scoring {first}, later run {later}")
print(f"load {os.getloadavg()[0]:.1f}")
