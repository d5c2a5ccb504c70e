"""Redaction: secrets, emails, home paths and user names out of every stored text.

Runs during ingest, before anything reaches the state store, so a secret seen once
is never written to the store, a dataset, a log line or a report. Each finding is
replaced by a typed placeholder (``<SECRET:github_token>``, ``<EMAIL>``, ``<HOME>``,
``<USER>``, ``<IMAGE>``, ``<BASE64>``) and counted by kind.

Depends only on the records, errors and config types. The modules, in the order
the work flows:

- :mod:`.session`: the one traversal of a session's string slots
  (:func:`session_slots`), used to read them for the pre-scan and to write them
  back; :func:`redact_session` is what ingest calls.
- :mod:`.prescan` (with :mod:`.literals`): one Aho-Corasick pass over all of a
  session's texts tells each text which stages it needs (most need none).
- :mod:`.redactor`: the stages in order for one configuration.
- :mod:`.rules`: the anchored rule table (key formats by prefix, command-line
  passwords, PEM keys, URL credentials …); :mod:`.keyed`: secrets known by their
  name (``NAME=value``); :mod:`.plugins`: the detect-secrets adapter with its
  gates; :mod:`.pii`: emails, home paths, user names, card and phone numbers;
  :mod:`.placeholders`: what findings become.
"""

from mlx_rsi.redact.keyed import is_secret_name
from mlx_rsi.redact.pii import home_users
from mlx_rsi.redact.placeholders import BASE64, EMAIL, HOME, IMAGE, USER, secret_placeholder
from mlx_rsi.redact.redactor import Redactor, redact_text, redactor_for
from mlx_rsi.redact.rules import RULES, Rule, compile_secret_patterns, replace_known
from mlx_rsi.redact.session import Slot, redact_session, session_slots

__all__ = [
    "BASE64",
    "EMAIL",
    "HOME",
    "IMAGE",
    "RULES",
    "USER",
    "Redactor",
    "Rule",
    "Slot",
    "compile_secret_patterns",
    "home_users",
    "is_secret_name",
    "redact_session",
    "redact_text",
    "redactor_for",
    "replace_known",
    "secret_placeholder",
    "session_slots",
]
