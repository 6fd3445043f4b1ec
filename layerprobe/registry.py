"""One registry idiom: entries by name, with a did-you-mean on a miss.

Tasks, probe families, commands, job stages and ladder models are each a :class:`Registry`:
``register`` adds an entry (as a call or as a decorator) and refuses a name already taken,
``get`` returns it or raises :class:`~layerprobe.errors.UnknownNameError` with the closest
names, and iterating gives the names in registration order.

Example
-------
>>> shapes = Registry("shape")
>>> @shapes.register("square")
... def square(side):
...     return side * side
>>> shapes.register("circle", lambda r: 3.14159 * r * r)  # doctest: +ELLIPSIS
<function <lambda> at ...>
>>> shapes.names(), "square" in shapes, len(shapes)
(['square', 'circle'], True, 2)
>>> shapes.get("sqare")
Traceback (most recent call last):
...
layerprobe.errors.UnknownNameError: unknown shape 'sqare'. Did you mean: square? Use one of square, circle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from layerprobe.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")
_NOTHING = object()


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order.

    Parameters
    ----------
    kind : what an entry is, as error messages name it (``"task"``, ``"probe family"``).
    hint : the sentence after the did-you-mean of an unknown name; ``{names}`` in it becomes
        the registered names, comma-separated. Default ``"Use one of {names}."``.
    """

    def __init__(self, kind: str, hint: str = "Use one of {names}.") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, entry: T) -> T: ...
    def register(self, name, entry=_NOTHING):
        """Add ``entry`` under ``name`` and return it; without ``entry``, a decorator that does.

        Raises
        ------
        ConfigError : ``name`` is registered already (a registry never replaces an entry).
        """

        def add(entry: T) -> T:
            if name in self._entries:
                raise ConfigError(
                    f"{self.kind} {name!r} is registered already; give the new one another name"
                )
            self._entries[name] = entry
            return entry

        return add if entry is _NOTHING else add(entry)

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`UnknownNameError` with the closest names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a job file
            names = list(self._entries)
            hint = self.hint.format(names=", ".join(names))
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{did_you_mean(str(name), names)} {hint}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def values(self) -> list[T]:
        """The registered entries, in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
