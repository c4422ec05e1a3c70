"""How an object store is configured: ``StorageOptions`` (``--storage-option KEY=VALUE`` pairs, in
``object_store``'s names, which polars and obstore both read) and their translation to obstore's config and
client options. ``runlog.storage`` opens the stores; the options are passed to it explicitly."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

# Option names obstore takes as client options (polars takes them with or without the family prefix):
# object_store's ``ClientConfigKey``s. One missing here would be prefixed and passed to obstore as a config key,
# which makes it panic.
CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle",
        "http2_max_frame_size",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "root_certificate",
        "timeout",
        "user_agent",
    }
)
BOOL_CLIENT_KEYS = frozenset(
    {"allow_http", "allow_invalid_certificates", "http1_only", "http2_only", "randomize_addresses"}
)
# polars' own options (its retries), never prefixed; polars wants numbers for them, not strings. obstore is given
# the same retry bounds (``retry_config``).
POLARS_KEYS = frozenset(
    {
        "file_cache_ttl",
        "max_retries",
        "retry_timeout_ms",
        "retry_init_backoff_ms",
        "retry_max_backoff_ms",
        "retry_base_multiplier",
    }
)
# Bounds on a store that accepts connections and never answers (a hung proxy, a wrong port behind a load
# balancer). Without them polars waits for an answer for ever, and obstore retries for 3 minutes. A request is
# given up after ``DEFAULT_TIMEOUT`` (from its connection to the end of its body: object_store's ``timeout``,
# whose own default it is; polars has none),
# and no retry starts later than ``DEFAULT_RETRY_TIMEOUT_MS`` after the first try. ``--storage-option
# timeout=...`` / ``retry_timeout_ms=...`` / ``max_retries=...`` set them.
DEFAULT_TIMEOUT = "30s"
DEFAULT_RETRY_TIMEOUT_MS = 30_000
PREFIXES = {"s3": "aws_", "gs": "google_", "az": "azure_"}


@dataclass(frozen=True)
class StorageOptions(Mapping[str, str]):
    """Object-store options in ``object_store``'s names (``aws_region``, ``aws_endpoint_url``, ...), passed
    explicitly to whatever opens a remote run (``open_run(..., storage_options=...)``); credentials also come
    from the standard environment. Immutable and hashable (a store is opened once per bucket and options),
    and a read-only mapping, so that it goes wherever a dict of options went (a fleet task, polars)."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, options: Mapping[str, str] | None) -> StorageOptions:
        """``options`` as a ``StorageOptions`` (a mapping's keys lower-cased, as object_store spells them)."""
        if isinstance(options, StorageOptions):
            return options
        return cls(tuple(sorted({str(k).lower(): str(v) for k, v in (options or {}).items()}.items())))

    @classmethod
    def parse(cls, pairs: Iterable[str]) -> StorageOptions:
        """``KEY=VALUE`` strings (``--storage-option``); a malformed one is a usage error."""
        return cls.of(parse_storage_options(pairs))

    def __getitem__(self, key: str) -> str:
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs)


def parse_storage_options(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--storage-option``) to a dict; a malformed one is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option {pair!r}: expected KEY=VALUE (for example aws_region=us-east-1)")
        out[key.strip().lower()] = value
    return out


def obstore_options(
    family: str, options: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """polars-style flat options -> (obstore config, obstore client options, obstore retry config).

    The client options start from the environment's (``AWS_ALLOW_HTTP``, ``GOOGLE_TIMEOUT``, ...): obstore
    reads those only when it is given no client options at all, so one client option on the command line
    (``timeout=30s``) would drop the environment's ``allow_http`` (then "builder error"). The command line wins
    per key. Where neither gives one, none is passed: obstore's defaults (``timeout`` 30 s: ``DEFAULT_TIMEOUT``)
    and the environment apply as they are (client options given replace obstore's defaults whole: where the
    endpoint is a plain ``http://`` URL, ``allow_http`` is set then, unless given). Retries end
    ``DEFAULT_RETRY_TIMEOUT_MS`` after the first try, unless set (``retry_timeout_ms``, ``max_retries``: polars'
    names, said to both clients)."""
    from datetime import timedelta

    prefix = PREFIXES[family]
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for k, v in options.items():
        key = k.lower()
        bare = key[len(prefix) :] if key.startswith(prefix) else key
        if bare in CLIENT_KEYS:
            client[bare] = v
        elif key in POLARS_KEYS:
            own[key] = _number(key, v)
        else:
            config[key if key.startswith(prefix) else prefix + key] = v
    if client:
        client = {**env_client_options(family, environ), **client}
        if "allow_http" not in client and _plain_http_endpoint(prefix, config, environ):
            # Given no client options, obstore's builder takes a plain-http endpoint (an emulator, a local
            # gateway); given any, the HTTP client refuses http unless told: "HTTP error: builder error" for a
            # setup that worked a moment before with no option. An http:// endpoint the user chose is allowed.
            client["allow_http"] = True
    client = {
        k: str(v).strip().lower() in ("1", "true", "yes") if k in BOOL_CLIENT_KEYS else v for k, v in client.items()
    }
    retry: dict[str, Any] = {
        "retry_timeout": timedelta(milliseconds=own.get("retry_timeout_ms", DEFAULT_RETRY_TIMEOUT_MS))
    }
    if "max_retries" in own:
        retry["max_retries"] = own["max_retries"]
    return config, client, retry


def polars_options(family: str, options: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options polars' reader gets: the user's, polars' own ones as numbers, and the same bounds on a store
    that never answers as obstore's (``DEFAULT_TIMEOUT`` unless ``timeout`` is set, here or in the environment;
    ``DEFAULT_RETRY_TIMEOUT_MS``): without a timeout, polars waits for an answer for ever."""
    prefix = PREFIXES[family]
    out: dict[str, Any] = {k: _number(k, v) if k in POLARS_KEYS else v for k, v in options.items()}
    given = {k[len(prefix) :] if k.startswith(prefix) else k for k in out}
    if "timeout" not in given and "timeout" not in env_client_options(family, environ):
        out["timeout"] = DEFAULT_TIMEOUT
    out.setdefault("retry_timeout_ms", DEFAULT_RETRY_TIMEOUT_MS)
    return out


def _plain_http_endpoint(prefix: str, config: Mapping[str, Any], environ: Mapping[str, str] | None) -> bool:
    """Whether the store's endpoint (``aws_endpoint``/``aws_endpoint_url``, ``google_base_url``,
    ``azure_endpoint``...: from the options or the environment) is a plain ``http://`` URL."""
    env = os.environ if environ is None else environ
    values = [v for k, v in config.items() if "endpoint" in k or k.endswith("base_url")]
    values += [
        v
        for k, v in env.items()
        if k.lower().startswith(prefix) and ("endpoint" in k.lower() or k.lower().endswith("base_url"))
    ]
    return any(isinstance(v, str) and v.strip().lower().startswith("http://") for v in values)


def env_client_options(family: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The client options the environment sets for a store of ``family`` (``AWS_ALLOW_HTTP=true``), as object_store
    reads them: the family's prefix, then a client key."""
    prefix = PREFIXES[family]
    out: dict[str, Any] = {}
    for k, v in (os.environ if environ is None else environ).items():
        key = k.lower()
        if key.startswith(prefix) and key[len(prefix) :] in CLIENT_KEYS:
            out[key[len(prefix) :]] = v
    return out


def _number(key: str, value: Any) -> int | float:
    """A polars option's value as the number polars wants (it refuses the string ``"3"``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(value) if key == "retry_base_multiplier" else int(str(value).strip())
    except ValueError:
        raise UsageError(f"--storage-option {key}={value}: expected a number") from None
