"""Jinja2 templates with autoescaping and gettext, one environment per language."""

from __future__ import annotations

import gettext
import hashlib
import time
from pathlib import Path
from typing import Any, Final

import jinja2
from markupsafe import Markup

from onionchat import i18n
from onionchat.chat import Author, EndReason, NoteKind, State
from onionchat.config import Config

DEFAULT_LANGUAGE = i18n.SOURCE_LANGUAGE


def templates_dir() -> Path:
    """Templates ship inside the package in a wheel; in a source checkout they sit beside it."""
    package = i18n.package_dir()
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


def clock(at: float) -> str:
    """HH:MM of a wall-clock time, for message lines (server time, never stored)."""
    return time.strftime("%H:%M", time.localtime(at))


def minutes(seconds: float) -> int:
    """Whole minutes, at least 0."""
    return max(0, int(seconds // 60))


@jinja2.pass_context
def csrf_field(context: jinja2.runtime.Context) -> Markup:
    """The hidden CSRF input every form carries, from the page's session (escaped)."""
    session = context.get("session")
    token = session.csrf if session is not None else ""
    return Markup('<input type="hidden" name="_csrf" value="{}">').format(token)


# What every template may use without its handler passing it: the shared enums and languages.
GLOBALS: Final[dict[str, Any]] = {
    "Author": Author, "State": State, "EndReason": EndReason, "NoteKind": NoteKind,
    "language_names": i18n.LANGUAGES, "visitor_languages": i18n.VISITOR_LANGUAGES,
    "staff_languages": i18n.STAFF_LANGUAGES, "text_direction": i18n.text_direction,
    "csrf_field": csrf_field,
}


class Renderer:
    """Renders templates for one audience's language; every value is HTML-escaped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._envs: dict[str, jinja2.Environment] = {}
        self.css = self._environment(DEFAULT_LANGUAGE).get_template("style.css").render(
            stalled=max(config.poll.stalled_seconds, config.poll.hold_seconds * 2 + 5,
                        config.poll.interval_seconds * 3)).encode()
        self.nojs_css = (templates_dir() / "nojs.css").read_bytes()
        # A versioned URL lets the browser keep the stylesheet in memory across frame reloads.
        self.css_version = hashlib.sha256(self.css).hexdigest()[:12]

    def _environment(self, lang: str) -> jinja2.Environment:
        env = self._envs.get(lang)
        if env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(templates_dir()),
                autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
                undefined=jinja2.StrictUndefined,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True, lstrip_blocks=True,
            )
            env.install_gettext_translations(self.translations(lang), newstyle=True)  # type: ignore[attr-defined]
            env.filters["clock"] = clock
            env.filters["minutes"] = minutes
            env.globals.update(GLOBALS)
            self._envs[lang] = env
        return env

    def translations(self, lang: str) -> gettext.NullTranslations:
        """The compiled catalog for ``lang`` (loaded once); English is the source language."""
        return i18n.translations(lang)

    def render(self, name: str, lang: str = DEFAULT_LANGUAGE, **context: Any) -> str:
        """Render template ``name`` in ``lang`` with the common context."""
        template = self._environment(lang).get_template(name)
        return template.render(config=self.config, lang=lang, text_dir=i18n.text_direction(lang),
                               css_version=self.css_version, **context)
