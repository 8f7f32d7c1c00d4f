"""The configuration: frozen dataclasses loaded from one TOML file and validated with clear messages."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from onionchat.errors import ConfigError
from onionchat.eventloop import CHOICES as EVENT_LOOPS
from onionchat.hours import OfficeHours
from onionchat.i18n import VISITOR_LANGUAGES

CONFIG_NAME = "onionchat.toml"
ENV_CONFIG = "ONIONCHAT_CONFIG"


def default_data_dir() -> Path:
    """Where data lives when nothing else is said: $XDG_DATA_HOME/onionchat or ~/.local/share."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "onionchat"


def setting(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field carrying its documentation and bounds, so one place defines both."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the two local sites listen."""

    visitor_host: str = setting("127.0.0.1", "Address the visitor site listens on (keep it on loopback).")
    visitor_port: int = setting(8080, "Port of the visitor site.", lo=1, hi=65535)
    staff_host: str = setting("127.0.0.1", "Address the staff site listens on (keep it on loopback).")
    staff_port: int = setting(8081, "Port of the staff site; always different from the visitor port.",
                              lo=1, hi=65535)
    data_dir: str = setting("", "Data directory (accounts, onion keys, counts). Empty: the directory "
                                "holding this file.")
    log_level: str = setting("INFO", "Log level of onionchat's own log lines.",
                             choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    event_loop: str = setting("auto", "The event loop: 'auto' uses uvloop where it is installed (faster), "
                                      "else Python's own; 'asyncio' always Python's own; 'uvloop' requires it.",
                              choices=EVENT_LOOPS)
    proxy_protocol: str = setting("auto", "Does every connection to both sites start with tor's PROXY line "
                                          "naming its circuit (HiddenServiceExportCircuitID haproxy)? 'auto': "
                                          "yes in launch mode and in torrc mode (as torrc.example has it), no "
                                          "with --local and in control mode; 'off': a torrc without that line "
                                          "(no budgets per visitor then); 'on': also with --local (tests).",
                                  choices=("auto", "on", "off"))


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Every quantity a visitor can grow, bounded."""

    message_length: int = setting(2000, "Longest message, in characters.", lo=1, hi=100_000)
    messages_per_conversation: int = setting(1000, "Messages kept in one conversation.", lo=1, hi=100_000)
    messages_per_minute: int = setting(30, "Messages one person may send per minute.", lo=1, hi=10_000)
    queue_length: int = setting(200, "Visitors waiting at once (those whose page stopped asking do not count); "
                                     "more are asked to come back later, unless a circuit holds more than its "
                                     "share of the line.",
                                lo=1, hi=100_000)
    conversations: int = setting(500, "Conversations (waiting and open) at once; ended chats and waiting visitors "
                                      "whose page stopped asking do not count.", lo=1, hi=1_000_000)
    sessions: int = setting(5000, "Visitor sessions in memory at once.", lo=1, hi=1_000_000)
    body_bytes: int = setting(16384, "Largest request body accepted, in bytes.", lo=1024, hi=10_000_000)
    connection_idle_seconds: int = setting(60, "A connection that has not sent a whole request for this long is "
                                               "closed, so slow or silent clients hold nothing (held frames are "
                                               "not affected).", lo=5, hi=3600)
    nickname_length: int = setting(40, "Longest nickname, in characters.", lo=1, hi=200)
    idle_minutes: int = setting(30, "A conversation nobody writes in or looks at for this long is ended "
                                    "and wiped.", lo=1, hi=24 * 60)
    ended_minutes: int = setting(10, "How long the last page of an ended conversation stays readable "
                                     "before it is wiped.", lo=0, hi=24 * 60)
    resume_attempts: int = setting(5, "Resume attempts allowed per browser session per 10 minutes (each "
                                      "circuit also has circuits.resumes).", lo=1, hi=1000)
    request_seconds: int = setting(20, "A request's headers and body must have arrived within this many seconds "
                                       "of its first byte, or the connection is closed (slow senders hold "
                                       "nothing for long).", lo=2, hi=3600)
    memory_mb: int = setting(256, "Memory for chat text, cached pages and sessions (counted, in MB). Above it "
                                  "new chats are refused with a 'very busy' page, and a chat may only grow "
                                  "within its share (memory_mb / conversations).", lo=16, hi=1_000_000)
    page_cache_mb: int = setting(32, "Of memory_mb, the most that rendered pages kept for reuse may take; "
                                     "beyond it pages are rendered for each request.", lo=1, hi=100_000)
    open_connections: int = setting(12_000, "Connections the visitor site keeps open at once (each held frame is "
                                            "one; ~25 KB each), kept below the open-file limit. At it, accepting "
                                            "pauses: new connections wait in the listen queue until one closes.",
                                    lo=64, hi=1_000_000)


@dataclass(frozen=True, slots=True)
class CircuitsConfig:
    """Budgets per Tor circuit, so that no one visitor can spend what everybody shares.

    Behind Tor each connection says which circuit it came on (an anonymous number, kept in
    memory only). Without Tor (serve --local) the whole listener is one circuit: these
    budgets then apply to everyone together, so the defaults leave room for a handful of
    people testing at once.
    """

    sessions: int = setting(30, "New visitor sessions (first visits) one circuit may open per 10 minutes; it "
                                "also holds at most this many at once (its oldest is forgotten first).",
                            lo=1, hi=1_000_000)
    chats: int = setting(5, "Chats one circuit may have waiting or open at once; it may start twice as many "
                            "per 10 minutes.", lo=1, hi=100_000)
    resumes: int = setting(10, "Resume attempts one circuit may make per 10 minutes.", lo=1, hi=100_000)
    connections: int = setting(16, "Connections one circuit may hold open at once (a browser opens up to 6 "
                                   "per site). Not counted without Tor.", lo=2, hi=100_000)
    requests_per_second: int = setting(3, "Requests one circuit may make per second on average; bursts of up "
                                          "to 10 seconds' worth (5 seconds' worth for a new circuit; a page "
                                          "with its frames is about 6).",
                                       lo=1, hi=100_000)
    strikes: int = setting(20, "Refusals within a minute after which a circuit is closed: its connections "
                               "end, tor is asked to close it (CLOSECIRCUIT), and it is refused for "
                               "penalty_minutes. Never without Tor.", lo=1, hi=100_000)
    penalty_minutes: int = setting(10, "How long a closed circuit stays refused.", lo=1, hi=24 * 60)
    tracked: int = setting(10_000, "Circuits whose budgets are remembered at once; beyond that the one unseen "
                                   "longest is forgotten.", lo=100, hi=10_000_000)


@dataclass(frozen=True, slots=True)
class PollConfig:
    """How the self-updating frames reach the browser without JavaScript."""

    mode: str = setting("hold", "'hold': the server holds a frame's request until something changes "
                                "(fast); 'interval': every request is answered at once and the frame "
                                "reloads every interval_seconds.", choices=("hold", "interval"))
    hold_seconds: int = setting(20, "Longest time a held request waits for a change.", lo=1, hi=120)
    interval_seconds: int = setting(5, "Reload interval in 'interval' mode, of the staff alerts tab, and of "
                                       "staff frames beyond staff_held_frames.", lo=1, hi=300)
    stalled_seconds: int = setting(60, "When a frame has not updated for this long, a notice asks the "
                                       "person to reload.", lo=5, hi=3600)
    frame_messages: int = setting(50, "The self-updating messages frame shows at most this many of the latest "
                                      "messages, with a link to the earlier ones: every update stays the same "
                                      "size however long a chat grows.", lo=5, hi=1000)
    staff_held_frames: int = setting(4, "Self-updating frames one staff browser may have held open at once "
                                        "(a workspace with 3 chats has 4); further frames are answered at once "
                                        "and ask again after interval_seconds. A browser opens about 6 "
                                        "connections per server and a held frame keeps one busy: below 6, "
                                        "a reply always finds a free one.", lo=1, hi=5)

    def presence_seconds(self) -> float:
        """How long a staff page may be silent before its counsellor no longer counts as available.

        An open page asks at least every hold (or interval) period: two of them, and a margin
        for a slow circuit.
        """
        return 2.0 * max(self.hold_seconds, self.interval_seconds) + 5.0


@dataclass(frozen=True, slots=True)
class VisitorConfig:
    """What the visitor sees."""

    site_name: str = setting("Helpline chat", "Name of the service shown on visitor pages.")
    page_title: str = setting("", "A neutral title for every visitor tab (e.g. 'Notes'); empty: the "
                                  "site name.")
    quick_exit_url: str = setting("https://www.wikipedia.org/",
                                  "Where Quick exit leads: a neutral page.")
    emergency_number: str = setting("112", "Emergency number shown to visitors in danger.")
    minutes_per_visitor: int = setting(8, "Assumed minutes per chat ahead, for the estimated wait.",
                                       lo=1, hi=240)
    default_language: str = setting("en", "Language of visitor pages until the visitor picks one (Tor "
                                          "Browser hides the browser's language).",
                                    choices=VISITOR_LANGUAGES)


@dataclass(frozen=True, slots=True)
class HoursConfig:
    """When the line is open, and what visitors are offered when it is not."""

    timezone: str = setting("Europe/Amsterdam", "Time zone of the opening hours.")
    weekly: list[str] = setting(["mon-sun 00:00-24:00"], "Opening hours, e.g. [\"mon-fri 09:00-17:00\", "
                                                         "\"sat 10:00-14:00\"].")
    closed_dates: list[str] = setting([], "Days the line is closed (holidays), e.g. [\"2026-12-25\"].")
    open_without_staff: bool = setting(False, "Let visitors join the line while no counsellor is available "
                                              "(they are told so). false: they get the 'come back later' page.")
    alternatives: list[str] = setting(["Emergency: 112"], "What visitors can do when the chat is closed or "
                                                         "full: other helplines, numbers.")


@dataclass(frozen=True, slots=True)
class StaffConfig:
    """Staff sign-in and sessions."""

    idle_minutes: int = setting(30, "A staff session in which the person did nothing (no click, no form; the "
                                    "pages' own updates do not count) for this long is logged out.",
                                lo=1, hi=24 * 60)
    session_hours: int = setting(12, "A staff session ends this long after its login, however busy: log in "
                                     "again.", lo=1, hi=7 * 24)
    login_attempts: int = setting(5, "Failed logins allowed per account from one Tor circuit within "
                                     "login_window_seconds (a password guesser on another circuit cannot "
                                     "use them up for the counsellor).", lo=1, hi=1000)
    login_attempts_per_circuit: int = setting(20, "Failed logins allowed from one Tor circuit within "
                                                  "login_window_seconds, whatever the names.", lo=1, hi=10_000)
    login_attempts_per_account: int = setting(50, "Failed logins allowed per account from all circuits together "
                                                  "within login_window_seconds; beyond that the account asks for "
                                                  "its two-factor code together with the password (an account "
                                                  "without 2FA waits until the window has passed). At least "
                                                  "login_attempts.", lo=1, hi=100_000)
    login_window_seconds: int = setting(60, "Window for counting failed logins.", lo=1, hi=86400)
    max_chats: int = setting(3, "Chats one counsellor may hold at once.", lo=1, hi=50)
    password_min: int = setting(14, "Shortest staff password.", lo=8, hi=128)
    audit_days: int = setting(90, "Days the audit log of staff actions is kept.", lo=1, hi=3650)
    audit_chat_ids: bool = setting(False, "Keep a chat's id in the audit log after the chat has ended. false: "
                                          "the id is removed when the chat ends, so stored entries cannot "
                                          "be tied together per chat.")
    audit_chat_time: str = setting("hour", "How exactly the audit log stores when something happened to a chat: "
                                           "'hour' or 'minute'.", choices=("hour", "minute"))
    require_totp: bool = setting(False, "Require two-factor login (TOTP) for every staff member: "
                                        "whoever has none sets it up right after the password.")
    block_minutes: int = setting(1440, "How long a blocked visitor session cannot start a new chat.",
                                 lo=1, hi=30 * 24 * 60)


CATEGORY_LENGTH = 60


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """The wrap-up questions' answers and the small-cell suppression of the statistics page.

    Counters are kept per answer text: renaming an answer starts a new counter (the old one
    is still shown for the months that have it).
    """

    contact_types: list[str] = setting(["real", "test", "silent", "abusive"],
                                       "Wrap-up: kind of contact. The first is a real contact: only for it "
                                       "are the questions below asked and counted.")
    age_bands: list[str] = setting(["under 12", "12-15", "16-17", "18-23", "24 and over", "unknown"],
                                   "Wrap-up: the visitor's age band.")
    exploitation: list[str] = setting(["sexual", "labour", "criminal (e.g. forced drug running)", "other",
                                       "unknown"], "Wrap-up: kind of exploitation.")
    durations: list[str] = setting(["under a month", "1-12 months", "over a year", "unknown"],
                                   "Wrap-up: how long it has been going on.")
    perpetrators: list[str] = setting(["one", "more than one", "unknown"],
                                      "Wrap-up: number of perpetrators.")
    referrals: list[str] = setting(["none", "police", "shelter", "medical", "legal aid", "other helpline",
                                    "other"], "Wrap-up: the main referral or action.")
    suppress_below: int = setting(5, "Statistics: counts under this number (zero included) are shown as "
                                     "'<5' (with the default; page and CSV), and more cells are hidden "
                                     "where needed so that they cannot be worked out from totals. Also the "
                                     "smallest batch in which new counts reach stats.json (until then they "
                                     "are in memory only: a restart loses them). 1: off.",
                                  lo=1, hi=1000)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            if not isinstance(values, list):
                continue
            if len(values) < 2:
                raise ConfigError(f"stats.{f.name} needs at least two answers")
            if len(set(values)) != len(values):
                raise ConfigError(f"stats.{f.name} lists an answer twice")
            for value in values:
                if not value.strip() or len(value) > CATEGORY_LENGTH or not value.isprintable():
                    raise ConfigError(f"stats.{f.name}: {value!r} must be 1 to {CATEGORY_LENGTH} printable "
                                      "characters")


@dataclass(frozen=True, slots=True)
class TorConfig:
    """How onionchat reaches tor (used by 'serve' without --local)."""

    mode: str = setting("auto", "'auto': 'launch' when a tor program is installed, else serve local-only "
                                "and say so; 'launch': start our own tor; 'control': use a running tor's "
                                "control port or socket; 'torrc': tor publishes via HiddenServiceDir (see "
                                "torrc.example).", choices=("auto", "launch", "control", "torrc"))
    tor_binary: str = setting("tor", "The tor program for 'launch' mode.")
    control_socket: str = setting("/run/tor/control", "Control socket for 'control' mode (Debian's "
                                                      "system tor). Empty: use control_port.")
    control_port: int = setting(9051, "Control port for 'control' mode when control_socket is empty.",
                                lo=1, hi=65535)
    control_password: str = setting("", "Control password, if the tor uses HashedControlPassword "
                                         "instead of cookie authentication.")
    hidden_service_dirs: list[str] = setting(["/var/lib/tor/onionchat-visitor",
                                              "/var/lib/tor/onionchat-staff"],
                                             "'torrc' mode: the visitor and staff HiddenServiceDir.")
    staff_client_auth: bool = setting(True, "Protect the staff onion with Tor client authorization "
                                            "(strongly recommended).")
    proof_of_work: bool = setting(True, "Turn on tor's proof-of-work defence where tor supports it.")
    max_streams: int = setting(60, "Most streams one circuit may open to an onion; a browser needs "
                                   "about 6 plus held frames.", lo=0, hi=65535)
    extra_torrc: list[str] = setting([], "'launch' mode: extra torrc lines, e.g. bridges: "
                                         "[\"UseBridges 1\", \"Bridge obfs4 ...\"].")
    bootstrap_timeout: int = setting(300, "Seconds to wait for tor to bootstrap.", lo=10, hi=3600)


@dataclass(frozen=True, slots=True)
class Config:
    """All settings; ``path`` is where they were read from (None: defaults only)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    circuits: CircuitsConfig = field(default_factory=CircuitsConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    visitor: VisitorConfig = field(default_factory=VisitorConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    hours: HoursConfig = field(default_factory=HoursConfig)
    tor: TorConfig = field(default_factory=TorConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    path: Path | None = None

    @property
    def data_dir(self) -> Path:
        """The data directory: set explicitly, else beside the config file, else the default."""
        if self.server.data_dir:
            return Path(self.server.data_dir).expanduser()
        if self.path is not None:
            return self.path.parent
        return default_data_dir()


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig, "limits": LimitsConfig, "circuits": CircuitsConfig, "poll": PollConfig,
    "visitor": VisitorConfig, "staff": StaffConfig, "hours": HoursConfig, "tor": TorConfig,
    "stats": StatsConfig,
}


def _convert(where: str, f: dataclasses.Field[Any], typ: Any, value: Any) -> Any:
    """Check one value against its field's type and bounds; raise ConfigError naming it."""
    meta = f.metadata
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number")
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{where} must be between {lo} and {hi}, not {value}")
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a text in quotes")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    elif typ == list[str] and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where} must be a list of texts, like [\"a\", \"b\"]")
    return value


def from_mapping(data: dict[str, Any], path: Path | None = None) -> Config:
    """Build a Config from parsed TOML, refusing unknown names and bad values."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a section")
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, raw in value.items():
            if key not in fields:
                raise ConfigError(f"unknown setting {name}.{key}")
            kwargs[key] = _convert(f"{name}.{key}", fields[key], hints[key], raw)
        sections[name] = cls(**kwargs)
    config = Config(**sections, path=path)
    OfficeHours.parse(config.hours.timezone, config.hours.weekly, config.hours.closed_dates)
    staff = config.staff
    if staff.login_attempts_per_account < staff.login_attempts:
        raise ConfigError("staff.login_attempts_per_account must be at least staff.login_attempts "
                          f"({staff.login_attempts}): otherwise one circuit could lock an account")
    server = config.server
    if (server.visitor_host, server.visitor_port) == (server.staff_host, server.staff_port):
        raise ConfigError("server.staff_port must differ from server.visitor_port")
    return config


def load(path: Path | None) -> Config:
    """Load the file at ``path`` (None: defaults only); every problem is one ConfigError line."""
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (create one with 'onionchat init')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return from_mapping(data, path.resolve())


@dataclass(frozen=True, slots=True)
class FoundConfig:
    """Which config file applies, and whether the person named it (--config or $ONIONCHAT_CONFIG)."""

    path: Path | None
    named: bool
    how: str  # in words, for messages


def locate_config(explicit: str | None) -> FoundConfig:
    """--config, then $ONIONCHAT_CONFIG, then ./onionchat.toml, then the default data dir's file."""
    if explicit:
        return FoundConfig(Path(explicit), True, "--config")
    env = os.environ.get(ENV_CONFIG)
    if env:
        return FoundConfig(Path(env), True, f"${ENV_CONFIG}")
    cwd = Path.cwd() / CONFIG_NAME
    if cwd.is_file():
        return FoundConfig(cwd, False, f"{CONFIG_NAME} in the current directory")
    default = default_data_dir() / CONFIG_NAME
    if default.is_file():
        return FoundConfig(default, False, "the default location")
    return FoundConfig(None, False, "no config file found, so the default data directory")


def find_config(explicit: str | None) -> Path | None:
    """--config, then $ONIONCHAT_CONFIG, then ./onionchat.toml, then the default data dir's file."""
    return locate_config(explicit).path


def load_found(explicit: str | None) -> Config:
    """The config that find_config finds for ``explicit`` (the --config value), loaded."""
    return load(find_config(explicit))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_template() -> str:
    """The commented config file 'onionchat init' writes: every setting with its default."""
    tor_note = "" if shutil.which("tor") else "# (no tor found on this machine: 'serve --local' runs without it)\n"
    lines = ["# onionchat configuration. Every setting is shown with its default.",
             "# Uncomment and change what you need; restart onionchat afterwards.", ""]
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        if name == "tor" and tor_note:
            lines.append(tor_note.rstrip("\n"))
        for f in dataclasses.fields(cls):
            lines.append(f"# {f.metadata['doc']}")
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            lines.append(f"# {f.name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)
