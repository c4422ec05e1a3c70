"""How an object store is configured: ``StorageOptions`` (``--storage-option KEY=VALUE`` pairs, in
``object_store``'s names, which polars and obstore both read) and their translation to obstore's config and
client options. ``runlog.storage`` opens the stores; the options are passed to it explicitly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

# Option names obstore takes as client options (polars takes them with or without the family prefix).
CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "timeout",
        "user_agent",
    }
)
BOOL_CLIENT_KEYS = frozenset({"allow_http", "allow_invalid_certificates", "http1_only", "http2_only"})
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


def obstore_options(family: str, options: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """polars-style flat options -> (obstore config, obstore client options)."""
    prefix = PREFIXES[family]
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for k, v in options.items():
        key = k.lower()
        bare = key[len(prefix) :] if key.startswith(prefix) else key
        if bare in CLIENT_KEYS:
            client[bare] = str(v).strip().lower() in ("1", "true", "yes") if bare in BOOL_CLIENT_KEYS else v
        else:
            config[key if key.startswith(prefix) else prefix + key] = v
    return config, client
