"""The message catalogs: extracted from the sources as they are now, every Spanish string
translated (not empty, not fuzzy, same placeholders), and the committed .mo compiled from the .po.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from conftest import ROOT

from hw_fhir.i18n import LOCALES_DIR, translator

POT = LOCALES_DIR / "messages.pot"
PO = LOCALES_DIR / "es" / "LC_MESSAGES" / "messages.po"
MO = LOCALES_DIR / "es" / "LC_MESSAGES" / "messages.mo"


def _ids(path: Path) -> set[object]:
    with path.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


def test_the_template_is_extracted_from_the_current_sources(tmp_path: Path) -> None:
    fresh = tmp_path / "messages.pot"
    done = subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
         "-k", "_l", "-o", str(fresh), "--no-location", "--omit-header", "--sort-output", "."],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    extracted = _ids(fresh)
    assert len(extracted) > 100  # patient pages, reminders and crisis resources all seen
    stale = _ids(POT) ^ extracted
    assert not stale, (
        f"hw_fhir/locales/messages.pot is out of date ({sorted(map(str, stale))[:5]}...): "
        "see hw_fhir/locales/README.md"
    )
    assert _ids(PO) == extracted, "es/messages.po needs `pybabel update` (hw_fhir/locales/README.md)"


def test_every_spanish_message_is_translated_with_the_same_placeholders() -> None:
    with PO.open("rb") as f:
        catalog = read_po(f, locale="es")
    untranslated = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(s and s.strip() for s in strings):
            untranslated.append(message.id)
    assert not untranslated, f"untranslated or fuzzy Spanish messages: {untranslated}"
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems, f"placeholders differ between English and Spanish: {problems}"


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def test_the_committed_mo_is_compiled_from_the_po() -> None:
    with PO.open("rb") as f:
        catalog = read_po(f, locale="es")
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    expected = {_key(m.id): _key(m.string) for m in read_mo(compiled) if m.id}
    with MO.open("rb") as f:
        committed = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    assert committed == expected, "run `pybabel compile -d hw_fhir/locales -l es`"


def test_the_core_translates_without_flask() -> None:
    code = (
        "import sys; from hw_fhir.i18n import translator; "
        "print(translator('es')('988 Suicide & Crisis Lifeline')); "
        "assert 'flask' not in sys.modules, 'hw_fhir.i18n imported Flask'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "988 Línea de Prevención del Suicidio y Crisis"
    assert translator("en")("988 Suicide & Crisis Lifeline") == "988 Suicide & Crisis Lifeline"
    assert translator("fr")("Reminders") == "Reminders"  # unsupported: the original


_JINJA = re.compile(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", re.S)
_WORD = re.compile(r"[A-Za-z]{2,}")
_SPOKEN_ATTRIBUTES = {"alt", "aria-label", "title", "placeholder"}
_NOT_WORDS_RE = re.compile(r"hw-fhir")  # the product's name


class _Text(HTMLParser):
    """Collect the text a person reads or hears: text nodes and spoken attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in _SPOKEN_ATTRIBUTES and value:
                self.found.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.found.append(data)


def test_no_patient_template_has_text_outside_the_catalog() -> None:
    templates = sorted((ROOT / "smart_app" / "templates" / "patient").glob("*.html"))
    templates.append(ROOT / "smart_app" / "templates" / "_crisis.html")
    leftovers = {}
    for path in templates:
        parser = _Text()
        parser.feed(_JINJA.sub(" ", path.read_text()))
        words = [
            t.strip()
            for t in parser.found
            if '="' not in t  # a macro that writes attributes, not text
            and _WORD.search(_NOT_WORDS_RE.sub(" ", t))
        ]
        if words:
            leftovers[path.name] = words
    assert not leftovers, f"wrap these in _(): {leftovers}"
