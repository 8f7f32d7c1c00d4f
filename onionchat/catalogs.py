"""Maintain the gettext catalogs: extract, update, compile, check (``python -m onionchat.catalogs``)."""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from onionchat import i18n

# Babel's default keywords (_ and gettext among them) plus N_ for strings marked in tables.
KEYWORDS: Final = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
# A message is for staff only when every place it comes from is in the staff site's package,
# the tor package or a staff template; anything else counts as visitor-facing and must exist
# in every visitor language. A new module elsewhere defaults to visitor-facing: erring on the
# visitor's side.
STAFF_ONLY_PATHS: Final = ("onionchat/staff/", "onionchat/tor/", "templates/staff/")
PLACEHOLDER: Final = re.compile(r"%\((\w+)\)[sd]|%[sd]")
HEADER: Final = "onionchat"
# A fixed date in the headers: regenerating unchanged catalogs must give identical files.
FIXED_DATE: Final = datetime(2026, 1, 1, tzinfo=UTC)


def source_root() -> Path:
    """The repository root (extraction needs the sources: a source checkout, not a wheel)."""
    return i18n.package_dir().parent


def pot_path() -> Path:
    """The extracted template, kept in the repository beside the catalogs."""
    return i18n.locale_dir() / f"{i18n.DOMAIN}.pot"


def po_path(lang: str) -> Path:
    """One language's editable catalog."""
    return i18n.locale_dir() / lang / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def extract() -> Catalog:
    """Every translatable message in the Python sources and the templates, with its places."""
    root = source_root()
    with (i18n.package_dir() / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    catalog = Catalog(project=HEADER, domain=i18n.DOMAIN, charset="utf-8", fuzzy=False,
                      creation_date=FIXED_DATE, revision_date=FIXED_DATE)
    for filename, lineno, message, comments, context in extract_from_dir(
            str(root), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def pot_text(catalog: Catalog) -> str:
    """The .pot as text, stable between runs: no dates, no line numbers, sorted."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, omit_header=False, include_lineno=False, sort_output=True, width=100)
    return buffer.getvalue().decode("utf-8")


def is_visitor_facing(message: Message) -> bool:
    """True unless every place the message comes from is staff-only."""
    return not all(filename.replace("\\", "/").startswith(STAFF_ONLY_PATHS) for filename, _ in message.locations)


def placeholders(text: str) -> list[str]:
    """The sorted, distinct %(name)s / %s placeholders of a string."""
    return sorted(set(PLACEHOLDER.findall(text)))


def load(path: Path) -> Catalog:
    """Read a .po or .pot file."""
    with path.open("rb") as fp:
        return read_po(fp)


def places(catalog: Catalog) -> dict[str, frozenset[str]]:
    """Each message id with the files it comes from (what decides visitor-facing or staff-only)."""
    return {str(m.id): frozenset(f for f, _ in m.locations) for m in catalog if m.id}


def stale() -> bool:
    """True when the committed .pot no longer matches the sources (a string added, changed or moved).

    Compared by ids and files, not as text: another Babel version writes another header.
    """
    return not pot_path().exists() or places(extract()) != places(load(pot_path()))


def update(languages: Iterable[str]) -> None:
    """Extract into the .pot, then merge it into each language's .po (new strings untranslated)."""
    template = extract()
    path = pot_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pot_text(template), encoding="utf-8")
    template = load(path)
    for lang in languages:
        po = po_path(lang)
        if po.exists():
            catalog = load(po)
            catalog.update(template, no_fuzzy_matching=True)
            catalog.obsolete.clear()  # removed strings go: their translations are in git history
            catalog.revision_date = FIXED_DATE
        else:
            catalog = Catalog(locale=lang, domain=i18n.DOMAIN, project=HEADER, charset="utf-8",
                              creation_date=FIXED_DATE, revision_date=FIXED_DATE)
            catalog.update(template, no_fuzzy_matching=True)
        po.parent.mkdir(parents=True, exist_ok=True)
        with po.open("wb") as fp:
            write_po(fp, catalog, include_lineno=False, sort_output=True, width=100, ignore_obsolete=True)


def compile_all(languages: Iterable[str]) -> None:
    """Write each language's .mo from its .po (only translated, non-fuzzy messages)."""
    for lang in languages:
        catalog = load(po_path(lang))
        with po_path(lang).with_suffix(".mo").open("wb") as fp:
            write_mo(fp, catalog, use_fuzzy=False)


def problems(lang: str) -> list[str]:
    """What is wrong with one language's catalog: missing translations, placeholder mismatches."""
    template = load(pot_path())
    catalog = load(po_path(lang))
    found: list[str] = []
    staff_too = lang in i18n.STAFF_LANGUAGES
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        needed = staff_too or is_visitor_facing(message)
        raw = translated.string if translated is not None else ""
        forms = (raw,) if isinstance(raw, str) else tuple(raw or ())
        if not all(forms) or (translated is not None and translated.fuzzy):
            if needed:
                found.append(f"{lang}: untranslated: {message.id!r}")
            continue
        if isinstance(message.id, str):
            if placeholders(forms[0]) != placeholders(message.id):
                found.append(f"{lang}: placeholders differ: {message.id!r} -> {forms[0]!r}")
        else:
            # Plural forms may leave the number out ("one chat"), but may not invent a placeholder.
            english = set(placeholders(message.id[0])) | set(placeholders(message.id[1]))
            if any(not set(placeholders(form)) <= english for form in forms):
                found.append(f"{lang}: placeholders differ: {message.id!r} -> {forms!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: extract (the .pot), update (.pot and every .po), compile (.mo), check."""
    parser = argparse.ArgumentParser(prog="python -m onionchat.catalogs", description=__doc__)
    parser.add_argument("action", choices=("extract", "update", "compile", "check"))
    parser.add_argument("languages", nargs="*", help="default: every shipped language but English")
    args = parser.parse_args(argv)
    languages = args.languages or [lang for lang in i18n.LANGUAGES if lang != i18n.SOURCE_LANGUAGE]
    if args.action == "extract":
        pot_path().write_text(pot_text(extract()), encoding="utf-8")
    elif args.action == "update":
        update(languages)
    elif args.action == "compile":
        compile_all(languages)
    else:
        found = [p for lang in languages for p in problems(lang)]
        if stale():
            found.insert(0, "the .pot is out of date: run 'python -m onionchat.catalogs update'")
        print("\n".join(found) or "all catalogs complete")
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
