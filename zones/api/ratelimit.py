"""Brute-force protection of logins: per user name, not per front-end or per client.

After `free_failures` failed logins in a row for one name, each further attempt for that
name must wait a delay that doubles per failure (capped); an attempt during the delay is
refused before any password is checked. Other names are unaffected, and a successful
login clears the name's record. Logins run on the leader (they write a token), so one
limiter sees all of a zone's attempts; the table is bounded (oldest entries are dropped).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int
    last: float


class LoginLimiter:
    def __init__(
        self,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        forget_after: float = 3600.0,
        max_names: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_names = max_names
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, name: str) -> float:
        """Seconds until `name` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            record = self._records.get(name)
            if record is None:
                return 0.0
            if now - record.last > self.forget_after:
                del self._records[name]
                return 0.0
            excess = record.failures - self.free_failures
            if excess < 0:
                return 0.0
            delay = min(self.base_delay * (2**excess), self.max_delay)
            return max(0.0, record.last + delay - now)

    def failed(self, name: str) -> None:
        now = self._clock()
        with self._lock:
            record = self._records.pop(name, None) or _Record(0, now)
            record.failures += 1
            record.last = now
            self._records[name] = record
            while len(self._records) > self.max_names:
                self._records.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)
