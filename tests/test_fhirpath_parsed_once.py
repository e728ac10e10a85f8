"""Each FHIRPath expression is parsed once: the syntax check and the evaluation share one parse.

Counted on real scoring runs of catalog instruments with an observer on fhirpathpy's
lexer (every parse, ours or ``fhirpathpy.parser.parse``, builds one ``FHIRPathLexer``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer

import hw_fhir
from hw_fhir.errors import ExpressionFailure
from hw_fhir.scoring import check_expressions, score_response
from hw_fhir.scoring import fhirpath

CATALOG = Path(hw_fhir.__file__).parent / "catalog" / "questionnaires"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "responses"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _expressions(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["expression"]} if node.get("language") == "text/fhirpath" else set()
        return found.union(*(_expressions(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_expressions(v) for v in node))
    return set()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each expression text was handed to the FHIRPath lexer (caches emptied first)."""
    seen: Counter[str] = Counter()
    real = FHIRPathLexer.__init__

    def counting(self: Any, input: Any = None, *args: Any, **kwargs: Any) -> None:
        seen[getattr(input, "strdata", None)] += 1
        real(self, input, *args, **kwargs)

    monkeypatch.setattr(FHIRPathLexer, "__init__", counting)
    fhirpath._compiled.cache_clear()
    return seen


@pytest.mark.parametrize("instrument, fixture", [
    ("phq-9", "phq-9-moderate-item9"), ("gad-7", "gad-7-mild"), ("pcl-5", "pcl-5-probable"),
    ("phq-2", "phq-2-positive"),
])
def test_a_scoring_run_parses_each_expression_once(parses: Counter[str], instrument: str,
                                                   fixture: str) -> None:
    questionnaire, response = _json(CATALOG / f"{instrument}.json"), _json(FIXTURES / f"{fixture}.json")
    expressions = _expressions(questionnaire)
    assert expressions
    assert not check_expressions(questionnaire)  # the syntax check (as on upload) ...
    first = score_response(questionnaire, response)  # ... then the first scoring
    assert set(parses) == expressions
    assert set(parses.values()) == {1}
    again = score_response(questionnaire, response)  # later runs: no parse at all
    assert set(parses.values()) == {1}
    assert again.scores == first.scores and first.scores


def test_the_parsed_form_is_fhirpathpys_own() -> None:
    for path in sorted(CATALOG.glob("*.json")):
        for expression in _expressions(_json(path)):
            assert fhirpath._parsed(expression) == parse(expression), expression


@pytest.mark.parametrize("expression, message", [
    ("%w.sum(", "syntax error at column 8: mismatched input '<EOF>'"),
    ("a b", "syntax error at column 3: extraneous input 'b' expecting <EOF>"),
    ("'open", "syntax error at column 1: token recognition error at: ''open'"),
])
def test_a_bad_expression_gives_the_same_clear_error(parses: Counter[str], expression: str,
                                                     message: str) -> None:
    assert fhirpath.syntax_error(expression) == message
    environment = fhirpath.SdcEnvironment({"resourceType": "Questionnaire", "status": "active"},
                                          {"resourceType": "QuestionnaireResponse", "status": "completed"})
    with pytest.raises(ExpressionFailure, match="^" + re.escape(message)):
        environment.evaluate(expression)
    assert parses == Counter({expression: 1})
