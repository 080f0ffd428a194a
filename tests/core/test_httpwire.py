"""A connection's writes within one turn of the event loop leave in one write: a
response's head and body go together (controlplane/httpwire.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.httpwire import JoinedWrites


class Recording(asyncio.Transport):
    """A transport that records what is done to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_a_head_leaves_with_its_body_and_a_lone_write_at_the_turns_end() -> None:
    inner = Recording()
    joined = JoinedWrites(inner, asyncio.get_running_loop())
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.calls == []  # the head is held
    assert joined.get_write_buffer_size() == 7 + 38
    joined.write(bytearray(b"{}"))  # its body: both leave at once, in one write
    assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    joined.write(b"lone")  # nothing follows it in this turn: it leaves at the turn's end
    assert len(inner.calls) == 1
    await _turn()
    assert inner.calls[1:] == [("write", b"lone")]
    await _turn()
    assert len(inner.calls) == 2  # nothing sent twice
    assert joined.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the transport's


async def test_a_close_sends_what_is_pending_first_and_an_abort_drops_it() -> None:
    inner = Recording()
    joined = JoinedWrites(inner, asyncio.get_running_loop())
    joined.write(b"answer")
    joined.close()
    await _turn()
    assert inner.calls == [("write", b"answer"), ("close", None)]
    inner = Recording()
    joined = JoinedWrites(inner, asyncio.get_running_loop())
    joined.write(b"lost")
    joined.abort()
    await _turn()
    assert inner.calls == [("abort", None)]
