"""The one redaction step: every known secret, in every form it can take in text, becomes ``***``.

Secrets are ``SecretStr`` in the settings, but their values still travel: in an ``Authorization``
header an HTTP library may quote in an error, URL-encoded in a connection string or query, base64'd in
Druva's Basic credentials, escaped in a JSON body or a ``repr``. So error text and log records pass
through ``scrub`` before they are printed or logged, whatever produced them. The secrets are read from
the raw environment, not from validated settings, so a value that fails validation (a token with a
newline in it) is scrubbed too.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

SECRET_SETTINGS = (
    "GRAPH_ACCESS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "DRUVA_CLIENT_SECRET",
    "GRAPH_CLIENT_STATE",
    "GRAPH_CLIENT_STATE_PREVIOUS",
    "PROVISIONING_TABLE_CONNECTION_STRING",
    "ServiceBusConnection",
)
BASIC_PAIRS = (("DRUVA_CLIENT_ID", "DRUVA_CLIENT_SECRET"), ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"))
MIN_LENGTH = 4  # a shorter "secret" would blank out ordinary words (and protects nothing)
MASK = "***"
# Parts of a connection string that are secrets on their own.
_CONNECTION_SECRET = re.compile(r"(?i)(?:AccountKey|SharedAccessKey|SharedAccessSignature)=([^;]+)")


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            forms.update(_forms(secret))
        kept = sorted((f for f in forms if len(f) >= MIN_LENGTH), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in kept)) if kept else None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
        secrets = [env[name] for name in SECRET_SETTINGS if env.get(name)]
        for name in ("PROVISIONING_TABLE_CONNECTION_STRING", "ServiceBusConnection"):
            secrets += _CONNECTION_SECRET.findall(env.get(name, ""))
        for user, secret in BASIC_PAIRS:
            if env.get(secret):
                pair = f"{env.get(user, '')}:{env[secret]}"
                secrets += [pair, pair.strip(), base64.b64encode(pair.strip().encode()).decode()]
        return cls(secrets)

    def scrub(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text


def _forms(secret: str) -> set[str]:
    """The secret as given, trimmed, each of its lines, and how encoders write each of those."""
    bases = {secret, secret.strip(), *(line.strip() for line in secret.splitlines())}
    forms: set[str] = set()
    for base in filter(None, bases):
        forms.update(
            {
                base,
                quote(base, safe=""),
                quote_plus(base, safe=""),
                json.dumps(base)[1:-1],
                repr(base)[1:-1],
                base64.b64encode(base.encode("utf-8", "surrogatepass")).decode(),
                repr(base.encode("utf-8", "surrogatepass"))[2:-1],  # as httpx quotes a header value
            }
        )
    return forms


_active = [Redactor(())]


def install(redactor: Redactor) -> None:
    """Make ``redactor`` the process's one redaction step, for ``scrub`` and every root log handler."""
    _active[0] = redactor
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def scrub(text: str) -> str:
    return _active[0].scrub(text)


def printable(text: str) -> str:
    """Text from outside (Graph, Druva, the state, the mappings file, an error) as it may be shown on a
    terminal: secrets masked, and every character that would be obeyed or hidden rather than seen
    written as ``\\uXXXX``: controls (an escape sequence, a newline), bidirectional overrides and
    isolates (after U+202E, "moc.osotnoc@nna" reads as "ann@contoso.com"), zero-width and other
    format characters, line and paragraph separators, lone surrogates. The one rule for everything the
    command line prints; JSON output uses ``printable_json``."""
    text = scrub(text)
    if text.isascii() and text.isprintable():  # nearly every line: nothing to look at
        return text
    return "".join(_escaped(char) if _hidden(char) else char for char in text)


def printable_json(value: object) -> str:
    """``value`` as one JSON text whose strings keep their letters (``ensure_ascii=False``: a Japanese
    display name stays readable) but carry the characters ``printable`` escapes as JSON escapes, so a
    terminal showing the line obeys none of them. It parses back to exactly ``value``."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isascii() and text.isprintable():
        return text
    return "".join(json.dumps(char)[1:-1] if _hidden(char) else char for char in text)


def printable_markup(text: str) -> str:
    """``printable`` text for a line or table cell that a rich console reads as markup: a name holding
    ``[bold]`` or ``[/]`` is shown as written, not obeyed (nor a markup error)."""
    from rich.markup import escape  # the command line's concern: the Functions never load rich

    return escape(printable(text))


# Controls, format characters (bidirectional controls, zero-width characters, tags), surrogates, line
# and paragraph separators. ZWNJ and ZWJ stay: names in Persian, in several Indic scripts and with emoji
# need them, and they move no text.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES and char not in _JOINERS


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class RedactingFilter(logging.Filter):
    """Renders the record once, scrubbed, so neither its arguments nor its traceback can leak."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: log what there is, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True
