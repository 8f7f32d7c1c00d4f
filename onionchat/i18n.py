"""The shipped languages, their compiled gettext catalogs, and the extraction mapping Babel uses."""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path
from typing import Final

DOMAIN: Final = "onionchat"
SOURCE_LANGUAGE: Final = "en"
# Every language a visitor can choose, named in that language (a visitor who reads only
# Arabic must recognise "العربية", not "Arabic"). Order: as a Dutch helpline meets them.
LANGUAGES: Final[dict[str, str]] = {
    "en": "English", "nl": "Nederlands", "ro": "Română", "bg": "Български", "pl": "Polski",
    "hu": "Magyar", "uk": "Українська", "es": "Español", "ar": "العربية",
}
VISITOR_LANGUAGES: Final = tuple(LANGUAGES)
STAFF_LANGUAGES: Final = ("en", "nl")
RIGHT_TO_LEFT: Final = frozenset({"ar"})
# Languages whose readers may know digits in their own script better than 0-9: the resume
# passphrase is shown in both (either is accepted back, see chat.normalise_passphrase).
NATIVE_DIGITS: Final[dict[str, str]] = {"ar": "٠١٢٣٤٥٦٧٨٩"}


def N_(message: str) -> str:  # noqa: N802 - the conventional name Babel extracts
    """Mark a string for translation without translating it yet (tables, error pages)."""
    return message


def package_dir() -> Path:
    """The onionchat package directory (installed or in a source checkout)."""
    return Path(__file__).resolve().parent


def locale_dir() -> Path:
    """Where the catalogs live: onionchat/locale/<lang>/LC_MESSAGES/onionchat.{po,mo}."""
    return package_dir() / "locale"


def text_direction(lang: str) -> str:
    """'rtl' for right-to-left languages, else 'ltr' (for the dir attribute)."""
    return "rtl" if lang in RIGHT_TO_LEFT else "ltr"


def native_digits(text: str, lang: str) -> str:
    """``text`` with 0-9 written in ``lang``'s own digits; "" when the language writes 0-9."""
    digits = NATIVE_DIGITS.get(lang)
    return text.translate(str.maketrans("0123456789", digits)) if digits else ""


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang``, loaded once; English is the source and needs none.

    A shipped language without its .mo is a packaging bug: fail loudly rather than show
    English to someone who chose Arabic.
    """
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    if lang not in LANGUAGES:
        raise LookupError(f"no such language: {lang!r}")
    mo = locale_dir() / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with mo.open("rb") as fp:
        return gettext.GNUTranslations(fp)
