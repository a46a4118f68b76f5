"""What a config, an override or a record may show or write: secret fields' values (``api_key``, ``token``,
``password``...) and the credentials inside URLs replaced by ``<redacted>``. Which fields are secret is judged by
the field's name (:func:`is_secret_field`)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from mgfrec.config.schema import MGFRecConfig
from mgfrec.validation import KEY_PREFIXES, REDACTED, looks_like_key

_SECRET_WORDS = frozenset(
    {
        "apikey",
        "secret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "sig",  # an Azure SAS URL's signature (?sig=...)
        "signature",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "token",
    }
)
_KEY_KINDS = frozenset(
    {
        "api",
        "access",
        "secret",
        "private",
        "auth",
        "signing",
        "encryption",
        "session",
        "license",
        "client",
        "ssh",
        "subscription",
    }
)
_COUNTS = frozenset({"max", "min", "num", "n", "count", "total"})
_NOT_SECRET = frozenset({"max", "num", "tokens", "new", "env", "header", "path", "file", "dir", "id", "name"})


def redacted(config: MGFRecConfig) -> dict[str, Any]:
    """The config as plain data with the values of secret fields (see :func:`is_secret_field`) replaced."""

    return scrubbed(config.model_dump(mode="json"))


def with_secrets_of(loaded: MGFRecConfig, source: MGFRecConfig) -> MGFRecConfig:
    """``loaded`` (read back from a run's ``config.yaml``, which records no secret) with each section that holds
    :data:`~mgfrec.validation.REDACTED` taken whole from ``source`` where ``source``'s section, secrets removed, is
    exactly that section: the same settings, their secrets held in memory by the process that wrote the run (a
    sweep evaluating the cell it has just trained). A section that differs in anything (another grounder, the
    rewards in another order) keeps its placeholder: a secret never goes to a setting it was not given for."""
    kept, raw, shown = loaded.model_dump(mode="json"), source.model_dump(mode="json"), redacted(source)
    restored = False
    for section, value in kept.items():
        if value == shown.get(section) and REDACTED in json.dumps(value, default=str):
            kept[section], restored = raw[section], True
    return MGFRecConfig.model_validate(kept) if restored else loaded


def check_secret_sets(recorded: MGFRecConfig, given: MGFRecConfig, sets: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` naming an override of ``sets`` that gives a setting ``recorded`` (a run's
    ``config.yaml``, read back) holds as :data:`~mgfrec.validation.REDACTED`, but changes more than its secret
    (``given``: ``recorded`` with ``sets`` applied). :func:`with_secrets_of` keeps the placeholder then, and the
    refusal that followed asked for the value again: the one just given (``--set user_agent.base_url=`` another
    host's URL; review s32). ``where`` names the run."""
    kept, shown = recorded.model_dump(mode="json"), redacted(given)
    for text in sets:
        path = text.partition("=")[0].strip().split(".")
        section = path[0]
        if REDACTED not in json.dumps(kept.get(section), default=str) or shown.get(section) == kept.get(section):
            continue
        before, after = kept, shown
        for part in path:
            before = before.get(part) if isinstance(before, dict) else None
            after = after.get(part) if isinstance(after, dict) else None
        field = ".".join(path)
        raise ValueError(
            f"--set {field}={after}: {where} recorded {field} as {before}; a --set given for a setting a run "
            "recorded without its secret gives that secret again and may change nothing else, so give the recorded "
            "value with its secret (to evaluate against another server, make a run for it: mgfrec derive RUN OUT "
            f"--set {field}=...)"
        )


def redacted_value(field: str, value: Any) -> Any:
    """``value`` of the dotted ``field`` as it may be shown or recorded: a secret field's value, URL credentials
    and secret query parameters, and secret keys inside a mapping replaced by ``<redacted>``."""
    last = field.split(".")[-1]
    return scrubbed({last: value})[last]


def scrubbed(node: Any) -> Any:
    """Plain data (a config's dump, a manifest's source options, a record) as it may be written or shown: secret
    fields' values and URL credentials replaced by ``<redacted>``, as in a resolved ``config.yaml``."""
    if isinstance(node, dict):
        return {k: (REDACTED if is_secret_field(str(k)) and v else scrubbed(v)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [scrubbed(v) for v in node]
    if isinstance(node, str):  # credentials inside a URL: https://user:pass@host, https://TOKEN@host, ?key=
        if node.startswith(KEY_PREFIXES) and looks_like_key(node):  # a provider's key under a name that does not
            return REDACTED  # say so (extra_body.provider_key; s40); unprefixed values may be names, paths: kept
        return _URL_AUTHORITY.sub(_scrub_url, node)
    return node


# a URL's scheme, its user information (up to an '@' before any '/'), and the rest up to whitespace; the scheme's
# '//' may have become one '/' (``Path("https://user:pw@host")`` prints ``https:/user:pw@host``)
_URL_AUTHORITY = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*:/{1,2})(?:([^/@\s]*)@)?(\S*)")


def scrub_urls(text: str) -> str:
    """``text`` with every URL's credentials and secret query values replaced by ``<redacted>`` (what the CLI does
    to every error line it prints: a URL given as a path, ``data.path`` included, is echoed by messages)."""
    return _URL_AUTHORITY.sub(_scrub_url, text)


def _scrub_url(match: re.Match[str]) -> str:
    """One URL with its password (or a user name given without one: a token) and the values of its secret query
    parameters (``api_key=``, ``token=``... by :func:`is_secret_field`) replaced by ``<redacted>``."""
    scheme, userinfo, rest = match.group(1), match.group(2), match.group(3)
    if userinfo is not None:
        name, colon, _ = userinfo.partition(":")
        userinfo = (f"{name}:{REDACTED}" if colon else REDACTED) + "@"
    path, question, query = rest.partition("?")
    if question:
        query = "&".join(
            f"{key}={REDACTED}" if eq and value and _secret_parameter(key) else f"{key}{eq}{value}"
            for key, eq, value in (pair.partition("=") for pair in query.split("&"))
        )
    return f"{scheme}{userinfo or ''}{path}{question}{query}"


_SECRET_PARAMETERS = frozenset({"code", "jwt", "hmac", "pass", "session", "sessionid", "sid"})
"""Query parameters that carry a credential though their name says nothing of one as a field's would: an Azure
Functions key (``?code=``), a token (``?jwt=``), a signature (``?hmac=``), a session."""


def _secret_parameter(key: str) -> bool:
    return is_secret_field(key) or unquote(key).strip().lower() in _SECRET_PARAMETERS


def is_secret_field(key: str) -> bool:
    """Whether a field's value is a secret, judged by what the name says the value is: ``api_key``,
    ``access_key``, ``secret``, ``password``, ``authorization``, ``token``, ``hf_token``, ``x-api-key``...
    The last word of the name decides (``api_key_env`` holds a variable's name, ``key_header`` a header's
    name, ``max_tokens`` a count), so counts and names stay readable and a written config can be resumed."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()) if w]
    if not words or words[-1] in _NOT_SECRET or any(w in _COUNTS for w in words[:-1]):
        return False  # a name, a path or a count (max_token, num_tokens), not the secret itself
    if words[-1] in ("key", "keys"):  # api_key(s), access_key, private_key, x-api-key or key alone; not sort_key
        return (len(words) == 1 and words[-1] == "key") or (len(words) > 1 and words[-2] in _KEY_KINDS)
    last = words[-1]
    return any(  # the word or its singular: secret(s), password(s), api_keys
        w in _SECRET_WORDS or w.endswith(("apikey", "secret", "password", "token"))
        for w in (last, last.removesuffix("s"))
    )


_NOT_SECRET_VARIABLES = frozenset({"PWD", "OLDPWD"})  # "pwd" names a password elsewhere; here the working folder
MIN_SECRET_VALUE = 8
"""Values shorter than this are placeholders (``EMPTY``), not secrets: replacing them would garble the text."""


def scrub_secrets(text: str) -> str:
    """``text`` as mgfrec prints or records an error: every URL's credentials (:func:`scrub_urls`) and every key
    the environment holds (:func:`scrub_env_secrets`) replaced by ``<redacted>``."""
    return scrub_env_secrets(scrub_urls(text))


def scrub_env_secrets(text: str) -> str:
    """``text`` with the value of every environment variable whose name says it holds a secret (``OPENAI_API_KEY``,
    ``HF_TOKEN``, any ``user_agent.api_key_env`` named so: :func:`is_secret_field`) replaced by ``<redacted>``: a
    plugin's error or a server's reply may quote a key mgfrec knows, and the CLI prints such text."""
    values = {
        value.strip()
        for name, value in os.environ.items()
        if name not in _NOT_SECRET_VARIABLES and len(value.strip()) >= MIN_SECRET_VALUE and is_secret_field(name)
    }
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
