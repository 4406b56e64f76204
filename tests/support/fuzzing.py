"""What the HTTP and MQTT fuzz tests share: hostile JSON and payloads, and a look at what the services
logged while a fuzz ran."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from tests.support.stack import Stack

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits too: serialize with json, not orjson
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
"""Any JSON value: in place of a member, the wrong type, a null, or a value out of every range."""

MIB = 1024**2


def hostile_payloads(huge: int) -> list[bytes]:
    """Payloads no parser should choke on: deep nesting, invalid UTF-8, non-objects, non-JSON literals, and
    one object of about `huge` bytes."""
    return [
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b"\xff\xfe\xfd",
        b'{"a": "\xc3\x28"}',
        b"null",
        b"[]",
        b"1",
        b'"text"',
        b"NaN",
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"\x00" * 16,
        b'{"a": "' + b"x" * huge + b'"}',
    ]


class LogMark:
    """Where the services' logs stood, to read what they wrote since."""

    def __init__(self, stack: Stack, services: tuple[str, ...] = ("control", "dataplane")) -> None:
        self.stack = stack
        self.sizes = {name: self._path(name).stat().st_size for name in services}

    def _path(self, name: str) -> Path:
        return self.stack.logs / f"{name}.log"

    def written_since(self, name: str) -> str:
        with self._path(name).open("rb") as log:
            log.seek(self.sizes[name])
            return log.read().decode(errors="replace")

    def assert_no_failure_logged(self) -> None:
        """No traceback, and nothing logged as an error, by any of the services since the mark."""
        for name in self.sizes:
            written = self.written_since(name)
            failures = [line for line in written.splitlines() if "Traceback" in line or '"level": "error"' in line]
            assert not failures, f"{name} logged:\n" + "\n".join(failures[:20]) + f"\n...\n{written[-3000:]}"
