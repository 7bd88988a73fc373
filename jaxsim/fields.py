"""Declared ranges of configuration fields, checked in one style everywhere.

A field states its allowed values once, next to its default::

    slot_s: float = bounded(1.0, 0.0, 3600.0, lo_open=True)    # (0, 3600]
    allocator: str = one_of("min_delay", ALLOCATORS)
    integer_rbs: bool = flag(False)

``check_fields(obj, "radio")`` checks every declared field of a dataclass and raises
:class:`ConfigError` (a ``ValueError``) naming the field, the value and the allowed range. The
simulator config, the PPO and ICL configs and the command-line flags all use it, and the fuzzer
(``scripts/tools/fuzz_configs.py``) samples valid configs from the same declarations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A configuration field or flag holds a value outside its allowed range."""


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (either end open or absent); integers only when ``integer``."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    allow_inf: bool = False
    optional: bool = False      # None (absent from the TOML) allowed: a default taken from elsewhere

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        kind = "an integer in " if self.integer else ""
        absent = " or absent" if self.optional else ""
        return f"{kind}{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}{absent}"

    def check(self, path: str, value: Any) -> None:
        if value is None and self.optional:
            return
        ok_type = isinstance(value, (int, np.integer)) if self.integer else isinstance(value, (int, float, np.number))
        if isinstance(value, (bool, np.bool_)) or not ok_type:
            raise ConfigError(f"{path} = {value!r}: must be {'an integer' if self.integer else 'a number'}, "
                              f"allowed {self.describe()}")
        if not self.integer and math.isnan(value):
            raise ConfigError(f"{path} = nan: must be a number, allowed {self.describe()}")
        if not self.integer and math.isinf(value) and not self.allow_inf:
            raise ConfigError(f"{path} = {value!r}: must be finite, allowed {self.describe()}")
        low = self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo))
        high = self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))
        if low or high:
            raise ConfigError(f"{path} = {value!r} is out of range: allowed {self.describe()}")

    def sample(self, rng: np.random.Generator, lo: float | None = None, hi: float | None = None):
        """A random allowed value (log-uniform over ranges spanning more than a decade from > 0); None half the
        time when the field is optional."""
        if self.optional and rng.integers(2):
            return None
        a = self.lo if lo is None else lo
        b = self.hi if hi is None else hi
        a = -1e3 if a is None else a
        b = (a + 1e3 if a <= 0 else a * 1e3) if b is None or math.isinf(b) else b
        if self.integer:
            return int(rng.integers(math.ceil(a) + (self.lo_open and a == math.ceil(a)), math.floor(b) + 1))
        if a > 0 and b / a > 10:
            x = float(math.exp(rng.uniform(math.log(a), math.log(b))))
        else:
            x = float(rng.uniform(a, b))
        if self.lo_open and x <= a:
            x = math.nextafter(a, math.inf)
        return min(max(x, a), b)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of names."""
    allowed: tuple

    def describe(self) -> str:
        return ", ".join(map(str, self.allowed))

    def check(self, path: str, value: Any) -> None:
        if isinstance(value, (list, dict)) or value not in self.allowed:
            raise ConfigError(f"{path} = {value!r}: unknown; allowed: {self.describe()}")

    def sample(self, rng: np.random.Generator):
        return self.allowed[int(rng.integers(len(self.allowed)))]


@dataclass(frozen=True)
class Flag:
    """True or false."""

    def describe(self) -> str:
        return "true or false"

    def check(self, path: str, value: Any) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{path} = {value!r}: must be true or false")

    def sample(self, rng: np.random.Generator):
        return bool(rng.integers(2))


def bounded(default, lo: float | None = None, hi: float | None = None, **kw):
    """A numeric dataclass field with its allowed range (see :class:`Range`)."""
    return dataclasses.field(default=default, metadata={"range": Range(lo, hi, **kw)})


def one_of(default, allowed):
    return dataclasses.field(default=default, metadata={"range": Choice(tuple(allowed))})


def flag(default: bool):
    return dataclasses.field(default=default, metadata={"range": Flag()})


def spec(cls_or_obj, name: str):
    """The declared range of field ``name`` (Range, Choice or Flag), or None."""
    return next((f.metadata.get("range") for f in dataclasses.fields(cls_or_obj) if f.name == name), None)


def check_fields(obj, path: str) -> None:
    """Check every declared field of the dataclass ``obj``; ``path`` prefixes the field names."""
    for f in dataclasses.fields(obj):
        r = f.metadata.get("range")
        if r is not None:
            r.check(f"{path}.{f.name}" if path else f.name, getattr(obj, f.name))


def check_name(path: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path} = {value!r}: must be a non-empty string")


def check_unique(path: str, names: list) -> None:
    """Names of a table's rows: each at most once (the last would otherwise silently win)."""
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        raise ConfigError(f"{path}: duplicate name(s) {dup}; each name may appear once")
