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

**Radio state machine** (the simulator's, :mod:`bench.sim.core`): a radio that has
carried nothing for at least its tail time (``tail_ms``: Wi-Fi PSM, LTE RRC_IDLE)
must be promoted before it carries data again. The chunk that finds the radio idle
starts a promotion of ``promotion_ms``; it and every later chunk of the same burst
on that stream wait ``promotion_ms`` more (the whole transfer starts late, as on
the radio, rather than only its first chunk: the shaper before the proxy keeps
feeding chunks at the link rate meanwhile) until the stream's backlog has drained;
chunks of other streams arriving during the promotion wait for its end.
A radio that has never carried anything is idle (the simulator starts every radio
idle). Both constants come from the same ``data/network/<radio>.yaml`` the
simulator reads (:func:`bench.world.network.load_link`), for every proxied radio
the link model knows; DRX wake-up inside the tail is not a separate constant there
(the tail's power is the long-DRX power), so it is not emulated either.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class DelayProxy:
    """Listen on ``listen`` (radio -> (host, port)), forward to ``upstream`` (host, port)."""

    listen: dict[str, tuple[str, int]]
    upstream: tuple[str, int]
    rtt_ms: dict[str, float] = field(default_factory=dict)
    #: radio -> (promotion_ms, tail_ms); None = from data/network for every proxied radio it knows
    radio_states: dict[str, tuple[float, float]] | None = None
    _servers: list = field(default_factory=list)

    def __post_init__(self):
        if self.radio_states is None:
            self.radio_states = link_state_constants(self.listen)
        self._last_activity = {r: -math.inf for r in self.listen}  # monotonic s; never active = idle
        self._awake_at = {r: -math.inf for r in self.listen}  # end of the promotion under way (or last)
        self.promotions = {r: 0 for r in self.listen}

    def _arrival_due(self, radio: str, now: float) -> tuple[float, float]:
        """(when a chunk arriving now on ``radio`` may leave the proxy: a running promotion, then half the RTT;
        the promotion this chunk started, in seconds, else 0)."""
        state = self.radio_states.get(radio)
        ready, started = now, 0.0
        if state is not None:
            promo_ms, tail_ms = state
            if now >= self._awake_at[radio] and now - self._last_activity[radio] >= tail_ms / 1e3:
                started = promo_ms / 1e3  # quiet for a whole tail: promote first
                self._awake_at[radio] = now + started
                self.promotions[radio] += 1
            ready = max(now, self._awake_at[radio])
        self._last_activity[radio] = now
        return ready + self.rtt_ms.get(radio, 0.0) / 2e3, started

    def _mark_active(self, radio: str) -> None:
        self._last_activity[radio] = max(self._last_activity[radio], time.monotonic())

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
        shift = [0.0]  # a promotion this stream started: its burst runs that much late until the backlog drains

        async def pump_in():
            while True:
                data = await reader.read(CHUNK)
                now = time.monotonic()
                if not data:  # end of stream: no radio traffic of its own
                    queue.put_nowait((now + shift[0] + self.rtt_ms.get(radio, 0.0) / 2e3, data))
                    return
                due, started = self._arrival_due(radio, now)
                if started:
                    shift[0] = started
                queue.put_nowait((max(due, now + shift[0] + self.rtt_ms.get(radio, 0.0) / 2e3), data))

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
                self._mark_active(radio)  # the radio carried this chunk until now
                if queue.empty():
                    shift[0] = 0.0  # the burst has caught up

        try:
            await asyncio.gather(pump_in(), pump_out())
        except (ConnectionError, OSError):
            writer.close()  # a reset on one side ends the other side too


def link_state_constants(radios) -> dict[str, tuple[float, float]]:
    """(promotion_ms, tail_ms) of every radio in ``radios`` that ``data/network`` has a link model for."""
    from bench.world.network import NetworkError, load_link

    out = {}
    for radio in radios:
        try:
            lk = load_link(radio)
        except (NetworkError, FileNotFoundError):  # a radio without a link model gets no state machine
            continue
        out[radio] = (float(lk.promotion_ms), float(lk.tail_ms))
    return out
