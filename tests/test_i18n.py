"""Languages: complete catalogs, the language chosen on the page, right-to-left, and safety text."""

from __future__ import annotations

import gettext
import re
from dataclasses import replace

import pytest

from onionchat import catalogs, i18n
from onionchat.config import Config, VisitorConfig, from_mapping
from onionchat.errors import ConfigError
from onionchat.web.app import Services
from tests.conftest import NewStaff, NewVisitor, only, start_chat

TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE_LANGUAGE]
HTML_TAG = re.compile(r"<html lang=\"([a-z]+)\" dir=\"(ltr|rtl)\">")


def test_the_pot_matches_the_sources() -> None:
    """A string added or changed in the code or a template fails here until the catalogs are updated."""
    assert not catalogs.stale(), ("the extracted strings changed: run 'python -m onionchat.catalogs update', "
                                  "translate the new strings in onionchat/locale/*/LC_MESSAGES/onionchat.po, "
                                  "then 'python -m onionchat.catalogs compile' (see README, Languages)")


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_needed_string_is_translated_with_the_same_placeholders(lang: str) -> None:
    """Visitor languages: every visitor-facing string; staff languages (Dutch): every string."""
    assert catalogs.problems(lang) == []


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_compiled_catalog_is_current(lang: str) -> None:
    """The shipped .mo says what the .po says: nobody forgot to compile after translating."""
    po = catalogs.load(catalogs.po_path(lang))
    with catalogs.po_path(lang).with_suffix(".mo").open("rb") as fp:
        mo = gettext.GNUTranslations(fp)
    for message in po:
        if message.id and isinstance(message.id, str) and message.string and not message.fuzzy:
            assert mo.gettext(message.id) == message.string, message.id


def test_the_visitor_and_staff_split() -> None:
    template = catalogs.load(catalogs.pot_path())
    kinds = {str(m.id): catalogs.is_visitor_facing(m) for m in template if m.id}
    assert kinds["Quick exit"] and kinds["Page not found"] and kinds["Skip to content"]
    assert not kinds["Accept next"] and not kinds["Staff login"]


def test_the_default_language_is_a_setting_checked_against_the_shipped_ones() -> None:
    assert from_mapping({"visitor": {"default_language": "ar"}}).visitor.default_language == "ar"
    with pytest.raises(ConfigError, match=r"visitor\.default_language must be one of en, nl"):
        from_mapping({"visitor": {"default_language": "xx"}})


async def test_the_language_list_names_each_language_in_itself(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    _, page = await visitor.get("/")
    for code, name in i18n.LANGUAGES.items():
        assert f'href="/lang/{code}?next=/" lang="{code}" hreflang="{code}"' in page
        assert f">{name}</a>" in page
    assert 'aria-current="true">English</a>' in page


async def test_a_chosen_language_is_remembered_for_the_session(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    response, _ = await visitor.get("/lang/nl?next=/safety")
    assert response.status == 303 and response.headers["Location"] == "/safety"
    _, page = await visitor.get("/safety")
    assert HTML_TAG.search(page).groups() == ("nl", "ltr")  # type: ignore[union-attr]
    assert "Snel weg" in page and "Nieuwe identiteit" in page
    _, page = await visitor.get("/")
    assert "Praat anoniem met een hulpverlener" in page and 'aria-current="true">Nederlands</a>' in page
    # Error pages speak the visitor's language too.
    response, page = await visitor.get("/no/such/page")
    assert response.status == 404 and "Pagina niet gevonden" in page and 'lang="nl"' in page


async def test_a_language_link_never_leads_elsewhere_and_unknown_languages_are_404(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    for target in ("https://example.org/", "//example.org/", "/exit", "/chat/messages"):
        response, _ = await visitor.get(f"/lang/es?next={target}")
        assert response.status == 303 and response.headers["Location"] == "/"
    response, _ = await visitor.get("/lang/xx")
    assert response.status == 404
    response, _ = await visitor.get("/lang/..%2f")
    assert response.status == 404


async def test_arabic_is_right_to_left_in_every_page_and_frame(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    await visitor.get("/lang/ar")
    _, landing = await visitor.get("/")
    assert HTML_TAG.search(landing).groups() == ("ar", "rtl")  # type: ignore[union-attr]
    # The other languages' names keep their own direction inside the Arabic page.
    assert 'lang="en" hreflang="en" dir="ltr"' in landing
    await start_chat(visitor)
    for path in ("/chat", "/chat/messages", "/chat/compose", "/safety"):
        _, page = await visitor.get(path)
        assert HTML_TAG.search(page).groups() == ("ar", "rtl"), path  # type: ignore[union-attr]
    _, frame = await visitor.get("/chat/messages")
    assert "إيقاف الرسائل في مكانها" in frame  # "Hold the messages still"


async def test_the_counsellor_sees_the_visitors_language(new_visitor: NewVisitor, new_staff: NewStaff,
                                                        services: Services) -> None:
    visitor = await new_visitor()
    await visitor.get("/lang/pl")
    await start_chat(visitor)
    cid = only(services)
    assert services.chat.find(cid).lang == "pl"  # type: ignore[union-attr]
    staff = await new_staff("carla")
    _, board = await staff.get("/board")
    assert '<span class="lang"><span lang="pl" dir="ltr">Polski</span> (pl)' in board
    # Switching mid-chat follows: the counsellor sees the language the visitor reads now.
    await visitor.get("/lang/uk?next=/chat")
    assert services.chat.find(cid).lang == "uk"  # type: ignore[union-attr]


async def test_a_language_switch_right_after_the_start_shows_the_passphrase_once_more(
        new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    passphrase = await start_chat(visitor)  # shown in English
    response, _ = await visitor.get("/lang/ro?next=/chat")
    assert response.headers["Location"] == "/chat"
    _, page = await visitor.get("/chat")
    assert passphrase in page and 'lang="ro"' in page
    # Only once more: after that it is forgotten again, whatever the visitor clicks.
    await visitor.get("/lang/hu?next=/chat")
    _, page = await visitor.get("/chat")
    assert passphrase not in page


async def test_resuming_in_another_language_updates_the_conversation(new_visitor: NewVisitor,
                                                                     services: Services) -> None:
    first = await new_visitor()
    passphrase = await start_chat(first)
    second = await new_visitor()
    await second.get("/lang/bg")
    await second.get("/")
    response, _ = await second.post("/resume", {"passphrase": passphrase})
    assert response.status == 303
    assert services.chat.find(only(services)).lang == "bg"  # type: ignore[union-attr]


async def test_staff_pages_in_english_and_dutch_only(new_staff: NewStaff) -> None:
    staff = await new_staff("carla")
    _, board = await staff.get("/")
    assert 'lang="en"' in board and ">Nederlands</a>" in board and ">Polski</a>" not in board
    response, _ = await staff.get("/lang/nl")
    assert response.status == 303
    _, workspace = await staff.get("/")
    _, board = await staff.get("/board")
    assert 'lang="nl"' in board and "Er wacht niemand." in board and "Uitloggen" in workspace
    response, _ = await staff.get("/lang/ar")
    assert response.status == 404


@pytest.fixture
def config(config: Config) -> Config:
    """A neutral tab title, so every visitor page can be checked for it."""
    return replace(config, visitor=replace(config.visitor, page_title="Notes"))


async def test_every_visitor_page_and_frame_uses_the_neutral_title(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    paths = ["/", "/safety", "/goodbye", "/no/such/page"]
    for path in paths:
        _, page = await visitor.get(path)
        assert "<title>Notes</title>" in page, path
    await start_chat(visitor)
    for path in ("/chat", "/chat/messages", "/chat/compose"):
        _, page = await visitor.get(path)
        assert "<title>Notes</title>" in page, path
        assert VisitorConfig().site_name not in page.split("</title>")[0], path


async def test_the_safest_banner_is_hidden_by_a_noscript_stylesheet(new_visitor: NewVisitor) -> None:
    visitor = await new_visitor()
    _, page = await visitor.get("/")
    assert '<noscript><link rel="stylesheet" href="/static/nojs.css"></noscript>' in page
    assert 'class="js-warning"' in page and "<style" not in page and "style=" not in page
    response = await visitor.client.get("/static/nojs.css")
    assert response.status == 200 and response.content_type == "text/css"
    assert ".js-warning { display: none; }" in await response.text()
    # Frames carry no banner: it belongs to the page around them.
    await start_chat(visitor)
    _, frame = await visitor.get("/chat/messages")
    assert "js-warning" not in frame


@pytest.mark.parametrize("lang", i18n.VISITOR_LANGUAGES)
async def test_the_safety_page_covers_the_essentials_in_every_language(new_visitor: NewVisitor, lang: str) -> None:
    """New Identity, closing Tor Browser, someone watching, nothing stored: translated, not English."""
    visitor = await new_visitor()
    await visitor.get(f"/lang/{lang}")
    _, page = await visitor.get("/safety")
    t = i18n.translations(lang).gettext
    for english in ("If someone may be watching", "Then close Tor Browser if you can.", "Nothing is stored",
                    "Or use “New Identity” in Tor Browser's menu: it closes all tabs and forgets everything, "
                    "without closing the browser.",
                    "We keep nothing: no name, no address, no messages after the chat ends."):
        text = t(english)
        assert lang == "en" or text != english, (lang, english)
        assert text in page, (lang, english)  # newstyle gettext marks catalog text safe: not escaped
