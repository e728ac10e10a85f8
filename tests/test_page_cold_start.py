"""A new process renders its first pages without compiling their templates again: the
compiled code is kept in ``<instance>/jinja-cache`` (checked against each template's
source by Jinja), and Babel's data for the app's languages is read when the app is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel import localedata


def test_a_second_app_loads_compiled_templates_instead_of_compiling(
    app_config: dict[str, Any],
) -> None:
    from smart_app import create_app

    first = create_app(app_config)
    first.jinja_env.get_template("clinician/panel.html")
    first.jinja_env.get_template("clinician/base.html")
    cache = Path(app_config["instance_path"]) / "jinja-cache"
    assert any(cache.iterdir())
    first.extensions["hw_fhir"].close()

    second = create_app(app_config)  # as a new worker process would
    compiled: list[str] = []
    compile_source = second.jinja_env.compile

    def counting(source: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return compile_source(source, name, *args, **kwargs)

    second.jinja_env.compile = counting  # type: ignore[method-assign]
    second.jinja_env.get_template("clinician/panel.html")
    second.jinja_env.get_template("clinician/base.html")
    assert compiled == []
    # a template not rendered before is compiled (and kept for the next process)
    second.jinja_env.get_template("patient/todo.html")
    assert compiled == ["patient/todo.html"]
    second.extensions["hw_fhir"].close()


def test_languages_date_data_is_read_when_the_app_is_made(app_config: dict[str, Any]) -> None:
    from hw_fhir.i18n import LANGUAGES
    from smart_app import create_app

    for language in LANGUAGES:
        localedata._cache.pop(language, None)  # as in a fresh process
    app = create_app(app_config)
    assert all(language in localedata._cache for language in LANGUAGES)
    app.extensions["hw_fhir"].close()
