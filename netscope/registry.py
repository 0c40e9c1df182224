"""The one registry type: a table with one entry per key, where a second registration under a key is refused.

Every per-kind table of netscope is one of these (model sources, wrapper kinds, checkpoint readers and
writers, container layouts, columns, finding codes, operator multiply-add formulas, layer size formulas,
key-segment rules), so "registered twice" is refused the same way everywhere and a table keyed by class
is looked up the same way everywhere: along the MRO, so a subclass gets its base's entry.
Reading is a plain ``Mapping`` (``in``, ``[]``, ``get``, iteration); writing goes through :meth:`add`.
No torch import here.
"""

from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, Mapping, Optional, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class Registry(Mapping[K, V], Generic[K, V]):
    """``what``: what one entry is, for the refusal message ("checkpoint writer", "column", ...)."""

    __slots__ = ("what", "_entries")

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: Dict[K, V] = {}

    def add(self, key: K, value: V) -> V:
        """Register ``value`` under ``key``; ``ValueError`` when ``key`` already has an entry."""
        if key in self._entries:
            raise ValueError(f"{self.what} for {_describe(key)} registered twice")
        self._entries[key] = value
        return value

    def decorator(self, *keys: K) -> Callable[[V], V]:
        """``@registry.decorator(key, ...)``: the decorated function registered under each key."""

        def register(fn: V) -> V:
            for key in keys:
                self.add(key, fn)
            return fn

        return register

    def lookup(self, cls: type) -> Optional[V]:
        """For a registry keyed by class: the entry of ``cls`` or of its nearest base that has one, else None."""
        entries = self._entries
        for klass in cls.__mro__:
            value = entries.get(klass, _MISSING)
            if value is not _MISSING:
                return value
        return None

    def pop(self, key: K, default=None):
        """Remove ``key``'s entry (plugins and tests undoing their own registration)."""
        return self._entries.pop(key, default)

    def __getitem__(self, key: K) -> V:
        return self._entries[key]

    def get(self, key, default=None):  # the dict's own, without Mapping's try/except
        return self._entries.get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self._entries)} entries)"


def _describe(key) -> str:
    return key.__name__ if isinstance(key, type) else repr(key)
