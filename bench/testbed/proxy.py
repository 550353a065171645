"""A small delaying TCP proxy: the link's propagation delay, in user space.

This kernel has no ``netem``, so delay is added here. The proxy runs inside the
server's namespace; one listener per emulated radio forwards to the server on
the namespace's loopback. Every chunk read from either side is held for half
the radio's current round-trip time before it is written on, in order, so a
request of ``B`` bytes over a link shaped to ``R`` (by ``htb``, before the proxy)
takes ``B/R + RTT`` plus the server's time - the simulator's offload model.
Because the proxy's kernel acknowledges data at once, the TCP sender does not see
the added delay in its ACK clock (unlike ``netem``): slow start and congestion
control act on the shaped, low-delay hop only. The delay can change at any time
(:meth:`DelayProxy.set_rtt`); a chunk keeps the delay in force when it arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class DelayProxy:
    """Listen on ``listen`` (radio -> (host, port)), forward to ``upstream`` (host, port)."""

    listen: dict[str, tuple[str, int]]
    upstream: tuple[str, int]
    rtt_ms: dict[str, float] = field(default_factory=dict)
    _servers: list = field(default_factory=list)

    def set_rtt(self, radio: str, rtt_ms: float) -> None:
        if radio not in self.listen:
            raise KeyError(f"unknown radio {radio!r}; proxied: {sorted(self.listen)}")
        if not (rtt_ms >= 0):
            raise ValueError(f"rtt_ms must be >= 0, got {rtt_ms}")
        self.rtt_ms[radio] = float(rtt_ms)

    async def start(self) -> None:
        for radio, (host, port) in self.listen.items():
            self.rtt_ms.setdefault(radio, 0.0)
            srv = await asyncio.start_server(lambda r, w, radio=radio: self._handle(radio, r, w), host, port)
            self._servers.append(srv)

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
            await srv.wait_closed()
        self._servers.clear()

    async def _handle(self, radio: str, client_r, client_w) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        # each direction ends on its own EOF (half-close forwarded); sockets close when both have ended
        await asyncio.gather(self._pipe(radio, client_r, up_w), self._pipe(radio, up_r, client_w),
                             return_exceptions=True)
        for w in (up_w, client_w):
            w.close()

    async def _pipe(self, radio: str, reader, writer) -> None:
        """Copy reader -> writer, each chunk delayed by half the RTT in force when it arrived."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump_in():
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((time.monotonic() + self.rtt_ms.get(radio, 0.0) / 2e3, data))
                if not data:
                    return

        async def pump_out():
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(pump_in(), pump_out())
        except (ConnectionError, OSError):
            writer.close()  # a reset on one side ends the other side too
