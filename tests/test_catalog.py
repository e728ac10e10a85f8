"""The shipped activity library and pathway templates (hw_fhir.catalog)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import pytest

from hw_fhir import catalog, responses
from hw_fhir.errors import InvalidInput, InvalidResponse, NotFound
from hw_fhir.models import validate
from hw_fhir.schedule import Schedule

EXT = "http://hl7.org/fhir/StructureDefinition/"
ITEM_CONTROL = EXT + "questionnaire-itemControl"
SLIDER_STEP = EXT + "questionnaire-sliderStepValue"
ITEM_MEDIA = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-itemMedia"
XHTML = EXT + "rendering-xhtml"
#: Measure files written separately; a pathway may name one before it lands.
MEASURE_IDS = {"phq-9", "phq-2", "gad-7", "pcl-5"}
QUESTIONNAIRE_DIR = resources.files("hw_fhir.catalog").joinpath("questionnaires")

#: enableWhen answer[x] that fits each item type (besides answerBoolean with ``exists``).
ANSWER_KEYS = {
    "boolean": {"answerBoolean"},
    "integer": {"answerInteger"},
    "decimal": {"answerDecimal"},
    "date": {"answerDate"},
    "dateTime": {"answerDateTime"},
    "time": {"answerTime"},
    "string": {"answerString"},
    "text": {"answerString"},
    "choice": {"answerCoding", "answerString"},
    "open-choice": {"answerCoding", "answerString"},
    "quantity": {"answerQuantity"},
    "reference": {"answerReference"},
}
ORDERED_TYPES = {"integer", "decimal", "date", "dateTime", "time", "quantity"}


def raw_files() -> list[tuple[str, dict[str, Any]]]:
    """Return (file name, JSON) of every catalog Questionnaire file, as shipped."""
    return [
        (entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in sorted(QUESTIONNAIRE_DIR.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield every item in document (pre-)order."""
    for item in items or []:
        yield item
        yield from walk(item.get("item") or [])


def extension(item: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in item.get("extension") or [] if e["url"] == url), None)


def control_code(item: dict[str, Any]) -> str | None:
    ext = extension(item, ITEM_CONTROL)
    return ext["valueCodeableConcept"]["coding"][0]["code"] if ext else None


QUESTIONNAIRES = catalog.load_questionnaires()
IDS = [q["id"] for q in QUESTIONNAIRES]


@pytest.fixture(params=QUESTIONNAIRES, ids=IDS)
def questionnaire(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


# -- the library as a whole ---------------------------------------------------------------


def test_library_has_at_least_20_activities_besides_measures() -> None:
    own = [q for q in QUESTIONNAIRES if q["id"] not in MEASURE_IDS]
    assert len(own) >= 20


@pytest.mark.parametrize("name,data", raw_files(), ids=[n for n, _ in raw_files()])
def test_every_file_is_a_valid_r4_questionnaire_named_after_its_id(
    name: str, data: dict[str, Any]
) -> None:
    assert validate(data, resource_type="Questionnaire")["id"] == data["id"]
    assert name == f"{data['id']}.json"


def test_loader_returns_every_file_sorted_by_id() -> None:
    assert IDS == sorted(IDS)
    assert IDS == sorted(data["id"] for _, data in raw_files())


def test_ids_and_canonicals_are_unique() -> None:
    assert len(set(IDS)) == len(IDS)
    canonicals = [catalog.canonical(q) for q in QUESTIONNAIRES]
    assert len(set(canonicals)) == len(canonicals)
    assert len({q["url"] for q in QUESTIONNAIRES}) == len(QUESTIONNAIRES)


def test_loader_hands_out_copies() -> None:
    first = catalog.load_questionnaires()
    first[0]["title"] = "changed"
    first[0]["item"].clear()
    again = catalog.load_questionnaires()
    assert again[0]["title"] != "changed"
    assert again[0]["item"]


# -- metadata conventions -------------------------------------------------------------------


def test_metadata_follows_conventions(questionnaire: dict[str, Any]) -> None:
    q = questionnaire
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", q["id"])
    assert q["url"] == f"{catalog.CANONICAL_BASE}/Questionnaire/{q['id']}"
    assert re.fullmatch(r"1\.\d+\.\d+", q["version"])  # semantic; a changed text is a new version
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", q["name"])
    assert q["status"] == "active"
    assert q["publisher"] == "hw-fhir"
    assert q["subjectType"] == ["Patient"]
    for key in ("title", "description"):
        assert q.get(key, "").strip(), f"{q['id']} has no {key}"


def test_every_activity_states_its_clinical_purpose() -> None:
    # Measures (written separately) carry their rationale in description/copyright.
    for q in QUESTIONNAIRES:
        if q["id"] not in MEASURE_IDS:
            assert len(q.get("purpose", "").strip()) > 40, q["id"]


def test_every_questionnaire_has_all_four_tags(questionnaire: dict[str, Any]) -> None:
    found = catalog.tags(questionnaire)
    known = {
        "problem-area": catalog.PROBLEM_AREAS,
        "modality": catalog.MODALITIES,
        "media": catalog.MEDIA_TYPES,
        "kind": catalog.ACTIVITY_KINDS,
    }
    for category, codes in found.items():
        assert codes, f"{questionnaire['id']} has no {category} tag"
        assert set(codes) <= set(known[category]), (questionnaire["id"], category, codes)


def test_each_use_context_pairs_the_right_code_with_its_value_system(
    questionnaire: dict[str, Any],
) -> None:
    category_of = {system: cat for cat, system in catalog.TAG_SYSTEMS.items()}
    for context in questionnaire["useContext"]:
        codings = context["valueCodeableConcept"]["coding"]
        assert len(codings) == 1, "one code per useContext entry"
        category = category_of[codings[0]["system"]]
        system, code = catalog.TAG_CONTEXT_CODES[category]
        assert context["code"] == {"system": system, "code": code}


def test_tags_reads_codes_and_ignores_other_systems() -> None:
    q = {
        "useContext": [
            {"code": {"system": catalog.USAGE_CONTEXT_TYPE_SYSTEM, "code": "focus"},
             "valueCodeableConcept": {"coding": [
                 {"system": catalog.PROBLEM_AREA_SYSTEM, "code": "panic"}]}},
            {"code": {"system": catalog.USAGE_CONTEXT_TYPE_SYSTEM, "code": "focus"},
             "valueCodeableConcept": {"coding": [
                 {"system": "http://snomed.info/sct", "code": "35489007"}]}},
            {"code": {"system": catalog.USAGE_CONTEXT_SYSTEM, "code": "media"},
             "valueCodeableConcept": {"coding": [
                 {"system": catalog.MEDIA_SYSTEM, "code": "audio"}]}},
            {"code": {"system": catalog.USAGE_CONTEXT_SYSTEM, "code": "media"},
             "valueCodeableConcept": {"coding": [
                 {"system": catalog.MEDIA_SYSTEM, "code": "practice"}]}},
        ]
    }
    assert catalog.tags(q) == {
        "problem-area": ["panic"], "modality": [], "media": ["audio", "practice"], "kind": [],
    }
    assert catalog.tags({}) == {"problem-area": [], "modality": [], "media": [], "kind": []}


# -- items ------------------------------------------------------------------------------------


def test_link_ids_are_unique_and_kebab_case(questionnaire: dict[str, Any]) -> None:
    link_ids = [item["linkId"] for item in walk(questionnaire["item"])]
    assert len(link_ids) == len(set(link_ids)), questionnaire["id"]
    for link_id in link_ids:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", link_id), link_id


def test_every_enable_when_refers_to_an_earlier_question_with_a_fitting_answer(
    questionnaire: dict[str, Any],
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for item in walk(questionnaire["item"]):
        for condition in item.get("enableWhen") or []:
            where = f"{questionnaire['id']}:{item['linkId']}"
            target = seen.get(condition["question"])
            assert target is not None, f"{where} depends on a later or unknown item"
            assert target["type"] not in ("group", "display"), where
            answer_keys = [k for k in condition if k.startswith("answer")]
            assert len(answer_keys) == 1, where
            key = answer_keys[0]
            if condition["operator"] == "exists":
                assert key == "answerBoolean", where
                continue
            assert key in ANSWER_KEYS[target["type"]], (where, key, target["type"])
            if condition["operator"] in (">", "<", ">=", "<="):
                assert target["type"] in ORDERED_TYPES, where
            if key == "answerCoding":
                options = {
                    (o["valueCoding"].get("system"), o["valueCoding"]["code"])
                    for o in target.get("answerOption") or [] if "valueCoding" in o
                }
                coding = condition["answerCoding"]
                assert (coding.get("system"), coding["code"]) in options, where
        seen[item["linkId"]] = item


def test_choice_items_offer_coded_or_string_options(questionnaire: dict[str, Any]) -> None:
    for item in walk(questionnaire["item"]):
        if item["type"] not in ("choice", "open-choice"):
            continue
        options = item.get("answerOption") or []
        assert options or item.get("answerValueSet"), item["linkId"]
        codes = []
        for option in options:
            if "valueCoding" in option:
                coding = option["valueCoding"]
                assert coding["system"].startswith("http"), item["linkId"]
                assert coding.get("display"), item["linkId"]
                codes.append((coding["system"], coding["code"]))
            else:
                assert "valueString" in option or "valueInteger" in option, item["linkId"]
        assert len(codes) == len(set(codes)), item["linkId"]


def test_own_choice_codes_use_the_hw_fhir_code_system_base() -> None:
    for q in QUESTIONNAIRES:
        if q["id"] in MEASURE_IDS:
            continue
        for item in walk(q["item"]):
            for option in item.get("answerOption") or []:
                system = option["valueCoding"]["system"]
                assert system.startswith(catalog.CODE_SYSTEM_BASE + "/"), (q["id"], system)


def test_free_text_items_have_a_max_length(questionnaire: dict[str, Any]) -> None:
    for item in walk(questionnaire["item"]):
        if item["type"] in ("string", "text"):
            assert 0 < item.get("maxLength", 0) <= 4000, (questionnaire["id"], item["linkId"])


def test_sliders_are_bounded_integers_with_a_step(questionnaire: dict[str, Any]) -> None:
    for item in walk(questionnaire["item"]):
        if control_code(item) != "slider":
            continue
        where = (questionnaire["id"], item["linkId"])
        assert item["type"] == "integer", where
        low = extension(item, EXT + "minValue")
        high = extension(item, EXT + "maxValue")
        step = extension(item, SLIDER_STEP)
        assert low and high and step, where
        assert (low["valueInteger"], high["valueInteger"]) in ((0, 10), (0, 100)), where
        assert 0 < step["valueInteger"] <= high["valueInteger"] // 10, where


def test_rating_items_are_sliders() -> None:
    rating = re.compile(r"\(0\s*(=|–|-)|0–10\b|0–100\b")
    for q in QUESTIONNAIRES:
        if q["id"] in MEASURE_IDS:
            continue
        for item in walk(q["item"]):
            if item["type"] == "integer" and rating.search(item["text"]):
                assert control_code(item) == "slider", (q["id"], item["linkId"])


def test_groups_have_children_and_repeating_entries_are_groups(
    questionnaire: dict[str, Any],
) -> None:
    for item in walk(questionnaire["item"]):
        if item["type"] == "group":
            assert item.get("item"), item["linkId"]
        if item["type"] == "display":
            assert not item.get("required") and not item.get("repeats"), item["linkId"]


def test_media_links_are_relative_or_crisis_lines(questionnaire: dict[str, Any]) -> None:
    for item in walk(questionnaire["item"]):
        media = extension(item, ITEM_MEDIA)
        if media:
            attachment = media["valueAttachment"]
            assert attachment["url"].startswith("/static/media/"), item["linkId"]
            assert attachment["contentType"].split("/")[0] in ("audio", "video", "image")
            assert attachment["url"] in item["text"], "the plain text carries the link too"
        text_ext = (item.get("_text") or {}).get("extension") or []
        for ext in text_ext:
            if ext["url"] == XHTML:
                assert ext["valueString"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
                for href in re.findall(r'href="([^"]*)"', ext["valueString"]):
                    assert href.startswith(("/static/media/", "tel:")), href
        for url in re.findall(r"https?://\S+", item.get("text", "")):
            assert "example" in url, f"untracked placeholder links only: {url}"


def test_audio_and_video_activities_embed_their_media() -> None:
    for q in QUESTIONNAIRES:
        media_tags = set(catalog.tags(q)["media"])
        types = {
            extension(i, ITEM_MEDIA)["valueAttachment"]["contentType"].split("/")[0]
            for i in walk(q["item"]) if extension(i, ITEM_MEDIA)
        }
        for kind in ("audio", "video"):
            assert (kind in media_tags) == (kind in types), (q["id"], kind)


def test_non_form_activities_end_with_a_completion_check_in() -> None:
    for q in QUESTIONNAIRES:
        tags = catalog.tags(q)
        if not set(tags["media"]) & {"audio", "video", "reading"}:
            continue
        items = {i["linkId"]: i for i in walk(q["item"])}
        assert items["done"]["type"] == "boolean" and items["done"].get("required"), q["id"]
        displays = [i for i in q["item"] if i["type"] == "display"]
        assert displays and q["item"].index(displays[0]) < q["item"].index(items["done"])


# -- specific activities ------------------------------------------------------------------


def by_id(qid: str) -> dict[str, Any]:
    return catalog.get_questionnaire(qid)


def items_of(qid: str) -> dict[str, dict[str, Any]]:
    return {item["linkId"]: item for item in walk(by_id(qid)["item"])}


def test_the_brief_activities_are_all_shipped() -> None:
    wanted = {
        "thought-record", "mood-log", "sleep-diary", "urge-log",
        "cognitive-distortion-tracker", "activity-schedule", "pleasant-activity-menu",
        "exposure-practice-log", "behavioral-experiment", "problem-solving",
        "paced-breathing", "body-scan", "grounding", "urge-surfing",
        "distress-tolerance-log", "dear-man", "reading-cbt-model",
        "audio-understanding-panic", "video-behavioral-activation", "gratitude-journal",
        "self-contract", "coping-card", "relapse-prevention-plan", "wheel-of-life",
        "session-preparation", "engagement-check-in",
    }
    assert wanted <= set(IDS), wanted - set(IDS)


def test_every_activity_kind_and_media_type_is_covered() -> None:
    seen_kinds = {k for q in QUESTIONNAIRES for k in catalog.tags(q)["kind"]}
    seen_media = {m for q in QUESTIONNAIRES for m in catalog.tags(q)["media"]}
    assert set(catalog.ACTIVITY_KINDS) - {"measure"} <= seen_kinds
    assert set(catalog.MEDIA_TYPES) <= seen_media


def test_engagement_check_in_matches_the_review_contract() -> None:
    q = by_id("engagement-check-in")
    assert q["url"] == catalog.ENGAGEMENT_CHECK_IN_URL
    items = items_of("engagement-check-in")
    assert list(items) == [
        "amount-done", "as-agreed", "difficulty", "helpfulness", "minutes-spent",
        "reason-not-done", "reason-other",
    ]
    assert {k: v["type"] for k, v in items.items()} == {
        "amount-done": "choice", "as-agreed": "boolean", "difficulty": "integer",
        "helpfulness": "integer", "minutes-spent": "integer", "reason-not-done": "choice",
        "reason-other": "string",
    }
    assert [o["valueCoding"]["code"] for o in items["amount-done"]["answerOption"]] == [
        "none", "some", "most", "all"]
    assert {o["valueCoding"]["system"] for o in items["amount-done"]["answerOption"]} == {
        catalog.AMOUNT_DONE_SYSTEM}
    for link_id in ("difficulty", "helpfulness"):
        assert extension(items[link_id], EXT + "minValue")["valueInteger"] == 0
        assert extension(items[link_id], EXT + "maxValue")["valueInteger"] == 10
    reasons = items["reason-not-done"]
    assert reasons["repeats"] is True
    assert [(o["valueCoding"]["system"], o["valueCoding"]["code"])
            for o in reasons["answerOption"]] == [
        (catalog.NON_COMPLETION_REASON_SYSTEM, code) for code in (
            "negative-events", "symptoms", "lack-of-strategies", "lack-of-time",
            "too-difficult", "forgot", "did-it-in-my-head", "other")]
    assert reasons["enableWhen"] == [{
        "question": "amount-done", "operator": "!=",
        "answerCoding": {"system": catalog.AMOUNT_DONE_SYSTEM, "code": "all"}}]
    assert items["reason-other"]["enableWhen"] == [{
        "question": "reason-not-done", "operator": "=",
        "answerCoding": {"system": catalog.NON_COMPLETION_REASON_SYSTEM, "code": "other"}}]


def test_thought_record_entries_repeat_with_the_classic_columns() -> None:
    items = items_of("thought-record")
    entry = items["entry"]
    assert entry["type"] == "group" and entry["repeats"] is True
    columns = [i["linkId"] for i in entry["item"]]
    for link_id in ("situation", "automatic-thought", "emotion", "emotion-intensity",
                    "evidence-for", "evidence-against", "balanced-thought", "emotion-after"):
        assert link_id in columns
    assert columns.index("emotion-intensity") < columns.index("emotion-after")
    for link_id in ("emotion-intensity", "emotion-after"):
        assert extension(items[link_id], EXT + "maxValue")["valueInteger"] == 100


def test_exposure_log_rates_suds_before_peak_and_after_on_0_to_100() -> None:
    items = items_of("exposure-practice-log")
    for link_id in ("suds-before", "suds-peak", "suds-after"):
        assert control_code(items[link_id]) == "slider"
        assert extension(items[link_id], EXT + "maxValue")["valueInteger"] == 100
        assert items[link_id]["required"] is True


def test_activity_schedule_rates_mastery_and_pleasure_only_when_done() -> None:
    items = items_of("activity-schedule")
    for link_id in ("mastery", "pleasure"):
        assert extension(items[link_id], EXT + "maxValue")["valueInteger"] == 10
        assert items[link_id]["enableWhen"] == [
            {"question": "done", "operator": "=", "answerBoolean": True}]


def test_sleep_diary_asks_the_consensus_core_questions() -> None:
    items = items_of("sleep-diary")
    expected = {"bed-time": "time", "sleep-latency": "integer", "awakenings": "integer",
                "wake-time": "time", "out-of-bed": "time", "quality": "choice"}
    assert {k: items[k]["type"] for k in expected} == expected


@pytest.mark.parametrize("qid", ["relapse-prevention-plan", "urge-log", "coping-card",
                                 "distress-tolerance-log", "urge-surfing"])
def test_risk_related_activities_show_the_988_crisis_line(qid: str) -> None:
    displays = [i for i in walk(by_id(qid)["item"]) if i["type"] == "display"]
    assert any("988" in i["text"] for i in displays)


def test_relapse_prevention_plan_has_the_four_parts() -> None:
    items = items_of("relapse-prevention-plan")
    assert items["warning-sign"]["repeats"] and items["coping-step"]["repeats"]
    assert items["contact"]["repeats"] and items["emergency-plan"]["required"]


# -- lookup -----------------------------------------------------------------------------------


def test_get_questionnaire_by_id_url_or_canonical() -> None:
    q = by_id("mood-log")
    assert catalog.get_questionnaire(q["url"]) == q
    assert catalog.get_questionnaire(catalog.canonical(q)) == q
    assert catalog.canonical(q) == f"{catalog.CANONICAL_BASE}/Questionnaire/mood-log|1.0.0"
    with pytest.raises(NotFound):
        catalog.get_questionnaire(q["url"] + "|9.9.9")
    with pytest.raises(NotFound):
        catalog.get_questionnaire("no-such-activity")


# -- pathways ---------------------------------------------------------------------------------

PATHWAYS = catalog.load_pathways()


def test_the_brief_pathways_are_shipped() -> None:
    titles = {p["title"] for p in PATHWAYS}
    assert {
        "Behavioral activation — 6 weeks",
        "Panic — psychoeducation → breathing → interoceptive exposure",
        "Insomnia — sleep diary + stimulus control, 4 weeks",
        "Depression measurement — PHQ-9 every 2 weeks",
    } <= titles
    ids = [p["id"] for p in PATHWAYS]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_every_pathway_step_names_a_catalog_questionnaire() -> None:
    known = {catalog.canonical(q) for q in QUESTIONNAIRES}
    for pathway in PATHWAYS:
        for step in pathway["steps"]:
            ref = step["activity"]
            if ref in known:
                continue
            qid = ref.partition("|")[0].rpartition("/")[2]
            measure_pending = (
                qid in MEASURE_IDS and not QUESTIONNAIRE_DIR.joinpath(f"{qid}.json").is_file()
            )
            assert measure_pending, f"{pathway['id']}: {ref} is not in the catalog"


def test_phq9_pathway_repeats_every_two_weeks() -> None:
    step = catalog.get_pathway("depression-measurement-phq9")["steps"][0]
    assert step["activity"] == "http://hw-fhir.org/fhir/Questionnaire/phq-9|1.0.0"
    schedule = catalog.step_schedule(step, start=date(2026, 1, 5), timezone="Europe/Berlin")
    assert isinstance(schedule, Schedule)
    dues = [o.local_date for o in schedule.iter_occurrences()]
    assert len(dues) == step["schedule"]["count"]
    assert {b - a for a, b in zip(dues, dues[1:])} == {timedelta(days=14)}


def test_every_shipped_step_builds_a_schedule_and_a_timing() -> None:
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    for pathway in PATHWAYS:
        for step in pathway["steps"]:
            schedule = catalog.step_schedule(
                step, start=start.date(), timezone="America/New_York")
            timing = schedule.to_fhir_timing()
            assert timing["repeat"]["count"] == step["schedule"].get("count", 1)
            assert isinstance(step["required"], bool)


def test_load_pathways_fills_defaults_and_hands_out_copies() -> None:
    pathway = catalog.get_pathway("insomnia-4-weeks")
    pathway["steps"].clear()
    assert catalog.get_pathway("insomnia-4-weeks")["steps"]
    checked = catalog.check_pathway({
        "id": "p", "title": "T", "description": "D", "problemArea": "general",
        "steps": [{"activity": "http://x.org/Questionnaire/a|1", "start": {"delayDays": 0},
                   "schedule": {"frequency": "once"}}],
    })
    assert checked["steps"][0]["required"] is True


def test_get_pathway_unknown_id() -> None:
    with pytest.raises(NotFound):
        catalog.get_pathway("no-such-pathway")


def good_pathway() -> dict[str, Any]:
    return {
        "id": "example", "title": "Example", "description": "An example.",
        "problemArea": "anxiety",
        "steps": [
            {"activity": "http://hw-fhir.org/fhir/Questionnaire/mood-log|1.0.0",
             "start": {"delayDays": 0}, "schedule": {"frequency": "daily", "count": 7}},
            {"activity": "http://hw-fhir.org/fhir/Questionnaire/dear-man|1.0.0",
             "start": {"afterPrevious": True},
             "schedule": {"frequency": "weekly", "interval": 2, "daysOfWeek": ["mon", "thu"],
                          "count": 4}, "required": False},
        ],
    }


def test_check_pathway_accepts_a_good_pathway() -> None:
    assert catalog.check_pathway(good_pathway()) == good_pathway() | {
        "steps": [good_pathway()["steps"][0] | {"required": True}, good_pathway()["steps"][1]]}


BAD_PATHWAYS = {
    "bad id": (lambda p: p.update(id="Not Kebab"), "id"),
    "unknown problem area": (lambda p: p.update(problemArea="sadness"), "problemArea"),
    "unknown top-level key": (lambda p: p.update(stepz=[]), "stepz"),
    "no steps": (lambda p: p.update(steps=[]), "steps"),
    "no version": (lambda p: p["steps"][0].update(activity="http://x/Questionnaire/a"),
                   "steps[0].activity"),
    "first step after previous": (
        lambda p: p["steps"][0].update(start={"afterPrevious": True}), "steps[0].start"),
    "both starts": (lambda p: p["steps"][1].update(
        start={"afterPrevious": True, "delayDays": 2}), "steps[1].start"),
    "negative delay": (lambda p: p["steps"][0].update(start={"delayDays": -1}),
                       "steps[0].start.delayDays"),
    "unknown frequency": (lambda p: p["steps"][0]["schedule"].update(frequency="monthly"),
                          "steps[0].schedule.frequency"),
    "recurring without count": (lambda p: p["steps"][0]["schedule"].pop("count"),
                                "steps[0].schedule.count"),
    "once twice": (lambda p: p["steps"][0].update(schedule={"frequency": "once", "count": 2}),
                   "steps[0].schedule.count"),
    "every-n-days without interval": (
        lambda p: p["steps"][0].update(schedule={"frequency": "every-n-days", "count": 3}),
        "steps[0].schedule.interval"),
    "interval on daily": (lambda p: p["steps"][0]["schedule"].update(interval=2),
                          "steps[0].schedule.interval"),
    "weekly without days": (lambda p: p["steps"][1]["schedule"].pop("daysOfWeek"),
                            "steps[1].schedule.daysOfWeek"),
    "bad day": (lambda p: p["steps"][1]["schedule"].update(daysOfWeek=["monday!"]),
                "steps[1].schedule.daysOfWeek"),
    "days on daily": (lambda p: p["steps"][0]["schedule"].update(daysOfWeek=["mon"]),
                      "steps[0].schedule.daysOfWeek"),
    "required not bool": (lambda p: p["steps"][0].update(required="yes"),
                          "steps[0].required"),
    "misspelt step key": (lambda p: p["steps"][0].update(instruction="x"),
                          "steps[0].instruction"),
}


@pytest.mark.parametrize("case", BAD_PATHWAYS, ids=list(BAD_PATHWAYS))
def test_check_pathway_rejects(case: str) -> None:
    change, expression = BAD_PATHWAYS[case]
    pathway = good_pathway()
    change(pathway)
    with pytest.raises(InvalidInput) as info:
        catalog.check_pathway(pathway)
    assert expression in [issue.expression for issue in info.value.issues]


def test_check_pathway_rejects_non_objects() -> None:
    with pytest.raises(InvalidInput):
        catalog.check_pathway(["not", "a", "pathway"])


# -- the catalog against the response validator ------------------------------------------------

SAMPLE_VALUES = {
    "boolean": ("valueBoolean", True),
    "date": ("valueDate", "2026-01-05"),
    "dateTime": ("valueDateTime", "2026-01-05T20:00:00Z"),
    "time": ("valueTime", "21:30:00"),
    "string": ("valueString", "A short answer"),
    "text": ("valueString", "A longer answer,\nover two lines."),
}


def sample_answer(item: dict[str, Any]) -> dict[str, Any]:
    """Return the lowest valid answer of a question item."""
    if item["type"] in ("choice", "open-choice"):
        return {"valueCoding": item["answerOption"][0]["valueCoding"]}
    if item["type"] in ("integer", "decimal"):
        low = extension(item, EXT + "minValue")
        key = "valueInteger" if item["type"] == "integer" else "valueDecimal"
        return {key: low[key] if low else 0}
    key, value = SAMPLE_VALUES[item["type"]]
    return {key: value}


def required_answers(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer exactly the required items (one instance of each required group)."""
    answered = []
    for item in items:
        if not item.get("required"):
            continue
        if item["type"] == "group":
            answered.append({"linkId": item["linkId"], "item": required_answers(item["item"])})
        else:
            answered.append({"linkId": item["linkId"], "answer": [sample_answer(item)]})
    return answered


def response_to(q: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": catalog.canonical(q),
        "status": "completed",
        "subject": {"reference": "Patient/example"},
        "authored": "2026-01-05T20:05:00Z",
        "item": items,
    }


def test_every_questionnaire_is_well_defined_for_the_response_validator(
    questionnaire: dict[str, Any],
) -> None:
    assert responses.check_questionnaire(questionnaire) == []


def test_every_questionnaire_can_be_completed_with_just_its_required_answers(
    questionnaire: dict[str, Any],
) -> None:
    response = response_to(questionnaire, required_answers(questionnaire["item"]))
    validate(response, resource_type="QuestionnaireResponse")
    responses.validate_response(questionnaire, response, final=True)
    if any(i.get("required") for i in questionnaire["item"]):
        with pytest.raises(InvalidResponse):
            responses.validate_response(questionnaire, response_to(questionnaire, []),
                                        final=True)


def engagement(amount: str, *extra: dict[str, Any]) -> dict[str, Any]:
    q = by_id("engagement-check-in")
    return response_to(q, [
        {"linkId": "amount-done", "answer": [{"valueCoding": {
            "system": catalog.AMOUNT_DONE_SYSTEM, "code": amount}}]},
        {"linkId": "as-agreed", "answer": [{"valueBoolean": False}]},
        {"linkId": "difficulty", "answer": [{"valueInteger": 7}]},
        {"linkId": "helpfulness", "answer": [{"valueInteger": 8}]},
        {"linkId": "minutes-spent", "answer": [{"valueInteger": 25}]},
        *extra,
    ])


def reasons(*codes: str) -> dict[str, Any]:
    return {"linkId": "reason-not-done", "answer": [
        {"valueCoding": {"system": catalog.NON_COMPLETION_REASON_SYSTEM, "code": code}}
        for code in codes]}


def test_engagement_check_in_records_several_reasons_and_a_free_text_one() -> None:
    q = by_id("engagement-check-in")
    response = engagement("some", reasons("lack-of-time", "other"),
                          {"linkId": "reason-other", "answer": [{"valueString": "Moved house"}]})
    responses.validate_response(q, response, final=True)
    assert responses.enabled_items(q, response) >= {"reason-not-done", "reason-other"}


def test_engagement_check_in_asks_no_reasons_when_all_was_done() -> None:
    q = by_id("engagement-check-in")
    assert "reason-not-done" not in responses.enabled_items(q, engagement("all"))
    with pytest.raises(InvalidResponse):
        responses.validate_response(q, engagement("all", reasons("forgot")), final=True)
    with pytest.raises(InvalidResponse):
        responses.validate_response(q, engagement("none", reasons("bored")), final=True)


def test_thought_record_takes_several_entries_and_bounds_ratings() -> None:
    q = by_id("thought-record")
    entry = required_answers(q["item"])[0]

    def with_intensity(value: int) -> dict[str, Any]:
        rows = [{"linkId": "entry", "item": [
            {**i, "answer": [{"valueInteger": value}]} if i["linkId"] == "emotion-intensity"
            else i for i in entry["item"]]} for _ in range(2)]
        return response_to(q, rows)

    responses.validate_response(q, with_intensity(85), final=True)
    with pytest.raises(InvalidResponse):
        responses.validate_response(q, with_intensity(120), final=True)
