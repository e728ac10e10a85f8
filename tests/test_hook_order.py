"""The order of the built-in plugins that docs/plugins.md documents is pluggy's real call order."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from hw_fhir import hookspecs
from hw_fhir.hookspecs import hookimpl
from hw_fhir.plugins import DEFAULT_PLUGINS, build_plugin_manager
from hw_fhir.worker import Worker

from reminder_support import make_services

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
INSTALLED = "installed plugins"


def _hooks() -> list[str]:
    return [name for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "hw_fhir_spec")]


def _documented_order() -> dict[str, list[str]]:
    text = DOCS.read_text()
    section = text.split("## Order of the built-ins", 1)[1].split("\n## ", 1)[0]
    order = {}
    for hook, items in re.findall(r"^\* `(\w+)`: (.+)$", section, flags=re.M):
        order[hook] = [item.strip().strip("`") for item in items.split(",")]
    return order


def _vendor() -> object:
    """A plugin implementing every hook, without tryfirst or trylast."""

    def impl(name):
        def hook():
            return None
        hook.__name__ = name
        return hookimpl(hook)

    return type("Vendor", (), {name: staticmethod(impl(name)) for name in _hooks()})()


def _real_order(pm, vendor) -> dict[str, list[str]]:
    vendor_name = pm.get_name(vendor)
    order = {}
    for name in _hooks():
        called = [impl.plugin_name for impl in reversed(getattr(pm.hook, name).get_hookimpls())]
        if any(p in DEFAULT_PLUGINS for p in called):
            order[name] = [INSTALLED if p == vendor_name else p for p in called]
    return order


def test_the_documented_order_of_the_built_ins_is_the_order_pluggy_calls_them():
    vendor = _vendor()
    pm = build_plugin_manager(entry_points=False, plugins=[vendor])
    assert _documented_order() == _real_order(pm, vendor)


def test_every_hook_in_the_order_list_exists():
    assert set(_documented_order()) <= set(_hooks())


def test_built_in_worker_jobs_run_before_a_vendor_job(tmp_path):
    def vendor_job(services):
        return 0

    class Jobs:
        @hookimpl
        def register_worker_tasks(self):
            return [vendor_job]

    services = make_services(tmp_path, Jobs())
    try:
        jobs = [getattr(j, "__name__", "") for j in Worker(services, name="w").jobs]
        assert jobs[-1] == "vendor_job"
        assert jobs.index("ehr_outbox") < jobs.index("vendor_job")  # default_sync is tryfirst
        assert jobs[:2] == ["reminder_queue", "plan_scheduler"]
    finally:
        services.close()


def test_hookspec_docstrings_are_one_line_and_arguments_are_typed():
    for name in _hooks():
        spec = getattr(hookspecs, name)
        doc = (spec.__doc__ or "").strip()
        assert doc and "\n" not in doc, name
        for parameter in inspect.signature(spec).parameters.values():
            assert parameter.annotation not in (inspect.Parameter.empty, "Any"), (name, parameter)
        assert "services" in inspect.signature(spec).parameters, name
