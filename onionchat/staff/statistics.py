"""The wrap-up form after a chat, and the anonymous statistics page with CSV export."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass

from aiohttp import web

from onionchat.accounts import Role
from onionchat.config import StatsConfig
from onionchat.errors import ErrorCode
from onionchat.i18n import N_
from onionchat.sessions import Session
from onionchat.stats import (
    CHATS,
    CONTACT,
    HOURS,
    LENGTH,
    LENGTH_BANDS,
    WAIT,
    WAIT_BUCKETS,
    WEEKDAYS,
    WRAPUP,
    Stats,
    Table,
    bucket_at,
    table,
    valid_month,
    with_extra,
)
from onionchat.web import keys
from onionchat.web.csrf import read_form
from onionchat.web.guard import Refused
from onionchat.web.pages import see_other

from .access import page, pane_number, pane_or_workspace, signed_in

routes = web.RouteTableDef()

MAX_MONTHS = 20 * 12  # the range selects offer at most this many months

# (form field and table name, config list, question as the form asks it)
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("age", "age_bands", N_("Age band")),
    ("exploitation", "exploitation", N_("Kind of exploitation")),
    ("duration", "durations", N_("How long it has been going on")),
    ("perpetrators", "perpetrators", N_("Number of perpetrators")),
    ("referral", "referrals", N_("Referral or action")),
)
MISSING = (N_("Please answer every question"),
           N_("For a real contact every question needs an answer; choose 'unknown' where you do not know."))


def answers_of(settings: StatsConfig, name: str) -> list[str]:
    """The configured answers of one question."""
    values: list[str] = getattr(settings, name)
    return values


# -- wrap-up ---------------------------------------------------------------------------------


@routes.get("/wrapup", name="wrapups")
async def wrapups(request: web.Request) -> web.Response:
    """The wrap-ups this counsellor still has to file (chats the visitor ended, too)."""
    session, account = signed_in(request)
    now = time.monotonic()
    pending = [(cid, int((now - p.since) // 60)) for cid, p in request.app[keys.STATS].pending_for(account.name)]
    return page(request, "staff/wrapups.html", session, pending=pending)


def wrapup_page(request: web.Request, session: Session, cid: str, chosen: dict[str, str], pane: int,
                status: int = 200, error: tuple[str, str] | None = None) -> web.Response:
    """The wrap-up form (in workspace pane ``pane``, or a page of its own), earlier choices kept after an error."""
    settings = request.app[keys.CONFIG].stats
    questions = [(field, title, answers_of(settings, name)) for field, name, title in QUESTIONS]
    return page(request, "staff/wrapup.html", session, status=status, cid=cid, chosen=chosen, error=error,
                contact_types=settings.contact_types, questions=questions, pane=pane)


@routes.get("/wrapup/{cid}", name="wrapup")
async def wrapup_form(request: web.Request) -> web.Response:
    """The short wrap-up form after a chat ended; only its counsellor may file it."""
    session, account = signed_in(request)
    cid = request.match_info["cid"]
    request.app[keys.STATS].pending(cid, account.name)
    return wrapup_page(request, session, cid, {}, pane_number(request.query.get("pane", ""), account, request))


@routes.post("/wrapup/{cid}", name="wrapup_post")
async def wrapup(request: web.Request) -> web.StreamResponse:
    """Count the answers (fixed values only) or skip; once; then back to its pane or the workspace."""
    session, account = signed_in(request)
    form = await read_form(request, session)
    cid = request.match_info["cid"]
    stats = request.app[keys.STATS]
    stats.pending(cid, account.name)
    pane = pane_number(form.get("pane", ""), account, request)
    done = pane_or_workspace(pane)  # the pane is free again, or the workspace
    if form.get("action") == "skip":
        stats.file_wrapup(cid, account.name, None)
        raise see_other(done)
    settings = request.app[keys.CONFIG].stats
    contact = form.get("contact", "")
    if contact not in settings.contact_types:
        raise Refused(ErrorCode.BAD_REQUEST)
    answers = {CONTACT: contact}
    # Only a real contact is described further: test, silent and abusive contacts would
    # distort who the helpline's visitors are.
    if contact == settings.contact_types[0]:
        chosen = {CONTACT: contact}
        for field, name, _ in QUESTIONS:
            value = form.get(field, "")
            if value and value not in answers_of(settings, name):
                raise Refused(ErrorCode.BAD_REQUEST)  # only the fixed values ever count
            if value:
                chosen[field] = value
        if len(chosen) != len(QUESTIONS) + 1:
            return wrapup_page(request, session, cid, chosen, pane, status=400, error=MISSING)
        answers = chosen
    stats.file_wrapup(cid, account.name, answers)
    raise see_other(done)


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the statistics page and the CSV show for one range of months."""

    first: str
    last: str
    tables: list[Table]
    median_wait: str
    p90_wait: str


def shift(month: str, by: int) -> str:
    """``month`` moved ``by`` months."""
    year, mon = int(month[:4]), int(month[5:])
    index = year * 12 + mon - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, at most MAX_MONTHS (the latest ones)."""
    months: list[str] = []
    month = last
    while month >= first and len(months) < MAX_MONTHS:
        months.append(month)
        month = shift(month, -1)
    return months[::-1]


def report(stats: Stats, settings: StatsConfig, first: str, last: str) -> Report:
    """The published tables of ``first``..``last``: page and CSV both come from here."""
    counts = stats.totals(first, last)
    real = settings.contact_types[0]
    # (child table, parent table, parent cell or None for the parent's total): the child's
    # total is that figure of the parent, so either both are hidden or neither.
    links = [(WAIT, CHATS, "answered"), (LENGTH, CHATS, "answered"), (HOURS, CHATS, None),
             (CONTACT, WRAPUP, "filed"), *((field, CONTACT, real) for field, _, _ in QUESTIONS)]
    force: dict[str, set[int]] = {}
    hide: set[str] = set()
    while True:
        tables = {t.key: t for t in _tables(counts, settings, force, hide)}
        grown = False
        for child, parent, label in links:
            if not tables[child].total_hidden:
                continue
            if label is None and not tables[parent].total_hidden:
                hide.add(parent)
                grown = True
            elif label is not None and not tables[parent].cell(label).hidden:
                labels = [c.label for c in tables[parent].cells]
                force.setdefault(parent, set()).add(labels.index(label))
                grown = True
        if not grown:
            break
    wait = counts.get(WAIT, {})
    # A median is only given where the number of waits is itself published and not small.
    enough = not tables[CHATS].cell("answered").hidden and sum(wait.values()) >= settings.suppress_below
    return Report(first, last, list(tables.values()),
                  bucket_at(wait, WAIT_BUCKETS, 0.5) if enough else "",
                  bucket_at(wait, WAIT_BUCKETS, 0.9) if enough else "")


def _tables(counts: dict[str, dict[str, int]], settings: StatsConfig, force: dict[str, set[int]],
            hide: set[str]) -> list[Table]:
    """Every table once, each child's total hidden where its parent's figure is."""
    below = settings.suppress_below

    def of(name: str) -> dict[str, int]:
        return counts.get(name, {})

    def make(key: str, caption: str, items: list[tuple[str, int]], *, total: int | None = None,
             hide_total: bool = False) -> Table:
        return table(key, caption, items, below, total=total, hide_total=hide_total or key in hide,
                     force=force.get(key, ()))

    chats = of(CHATS)
    summary = make(CHATS, N_("Chats offered"), [(N_("answered"), chats.get("answered", 0)),
                                                (N_("abandoned before an answer"), chats.get("abandoned", 0))],
                   total=chats.get("offered", 0))
    answered_hidden = summary.cell("answered").hidden
    tables = [
        summary,
        make(WAIT, N_("Waiting time before an answer"),
             [(label, of(WAIT).get(label, 0)) for _, label in WAIT_BUCKETS], hide_total=answered_hidden),
        make(LENGTH, N_("Chat length (answered chats)"),
             [(label, of(LENGTH).get(label, 0)) for _, label in LENGTH_BANDS], hide_total=answered_hidden),
        make(HOURS, N_("Busy hours of the week (chats offered)"),
             [(f"{day} {hour:02d}:00", of(HOURS).get(f"{d}-{hour}", 0))
              for d, day in enumerate(WEEKDAYS) for hour in range(24)],
             hide_total=summary.total_hidden),
    ]
    wrap = of(WRAPUP)
    filed = make(WRAPUP, N_("Wrap-ups"),
                 [(N_("filed"), wrap.get("filed", 0)), (N_("skipped"), wrap.get("skipped", 0))])
    contact = make(CONTACT, N_("Kind of contact"), with_extra(settings.contact_types, of(CONTACT)),
                   hide_total=filed.cell("filed").hidden)
    real_hidden = contact.cell(settings.contact_types[0]).hidden
    tables += [filed, contact]
    for field, name, title in QUESTIONS:
        tables.append(make(field, title, with_extra(answers_of(settings, name), of(field)), hide_total=real_hidden))
    return tables


def chosen_range(request: web.Request) -> tuple[str, str]:
    """The months asked for in the query (validated), by default this year so far."""
    this_month = time.strftime("%Y-%m", time.localtime())
    first = request.query.get("from", this_month[:4] + "-01")
    last = request.query.get("to", this_month)
    if not (valid_month(first) and valid_month(last)):
        raise Refused(ErrorCode.BAD_REQUEST)
    return (first, last) if first <= last else (last, first)


@routes.get("/stats", name="stats")
async def stats_page(request: web.Request) -> web.Response:
    """Totals and bars for a range of months, small cells suppressed; supervisors and admins."""
    session, _ = signed_in(request, Role.SUPERVISOR)
    first, last = chosen_range(request)
    stats = request.app[keys.STATS]
    settings = request.app[keys.CONFIG].stats
    this_month = time.strftime("%Y-%m", time.localtime())
    known = stats.months()
    earliest = min([*known[:1], first, this_month[:4] + "-01"])
    options = month_range(earliest, max(this_month, last))
    years = sorted({m[:4] for m in options}, reverse=True)
    result = report(stats, settings, first, last)
    return page(request, "staff/stats.html", session, report=result, options=options, years=years,
                below=settings.suppress_below, weekdays=WEEKDAYS)


@routes.get("/stats.csv", name="stats_csv")
async def stats_csv(request: web.Request) -> web.Response:
    """The same figures as the page, with the same suppression, as a CSV download."""
    signed_in(request, Role.SUPERVISOR)
    first, last = chosen_range(request)
    result = report(request.app[keys.STATS], request.app[keys.CONFIG].stats, first, last)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["from", "to", "table", "category", "count"])
    for t in result.tables:
        for cell in t.cells:
            writer.writerow([first, last, t.caption, _cell_text(cell.label), cell.shown])
        writer.writerow([first, last, t.caption, "total", t.total])
    writer.writerow([first, last, N_("Waiting time before an answer"), "median (band)", result.median_wait])
    writer.writerow([first, last, N_("Waiting time before an answer"), "90th percentile (band)",
                     result.p90_wait])
    return web.Response(body=out.getvalue().encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="onionchat-stats-{first}-to-{last}.csv"'})


def _cell_text(value: str) -> str:
    """A category as a spreadsheet shows it: never read as a formula (answers come from the config)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
