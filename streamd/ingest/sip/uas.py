"""The SIP user agent server's asyncio side: one timer, and what the state machine asks for.

:class:`~streamd.protocols.sip.uas.Uas` decides everything, sans-I/O (what to answer, when to
retransmit, when a call ends); this adapter feeds it the messages the transports hand over and
the loop's clock, arms one timer at :meth:`~streamd.protocols.sip.uas.Uas.deadline` (or the
next RTP-timeout check, whichever is sooner), and carries out its actions: bytes to send,
offers to answer with real ports and streams (:class:`~streamd.ingest.sip.call.SipCall`), calls
to end, lines to log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from streamd.ingest.sip.call import Cancelled, MediaContext, SipCall
from streamd.ingest.sip.transport import send
from streamd.protocols.sip.dialog import Call, Rejected
from streamd.protocols.sip.digest import DigestAuth
from streamd.protocols.sip.transaction import Peer, Send, Transactions
from streamd.protocols.sip.uas import (
    Action,
    EndCall,
    Forget,
    Log,
    Negotiate,
    SipCounters,
    Uas,
    UpdateMetadata,
)

if TYPE_CHECKING:
    from streamd.config.sources import SipConfig

log = logging.getLogger("streamd.ingest.sip.server")

MEDIA_CHECK_S = 0.5  # how often streams are checked for rtp_timeout_s


class SipUas:
    def __init__(self, cfg: SipConfig, ctx: MediaContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.machine = Uas(
            port=cfg.port,
            max_calls=cfg.max_calls,
            max_message_bytes=cfg.max_message_bytes,
            answer_delay_s=cfg.answer_delay_ms / 1000,
            allowed=ctx.allowed,
            local_ip=ctx.local_ip,
            max_calls_per_source=cfg.max_calls_per_source,
            max_media_per_call=cfg.max_media_per_call,
            auth=(
                DigestAuth(
                    cfg.auth_realm,
                    cfg.auth_users,
                    algorithms=cfg.auth_algorithms,
                    nonce_ttl_s=cfg.auth_nonce_s,
                )
                if cfg.auth_users
                else None
            ),
        )
        self.media: dict[Call, SipCall] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.negotiations: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._media_check = 0.0

    # what the source reports
    @property
    def port(self) -> int:
        return self.machine.port

    @port.setter
    def port(self, value: int) -> None:
        self.machine.port = value

    @property
    def accepting(self) -> bool:
        return self.machine.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.machine.accepting = value

    @property
    def counters(self) -> SipCounters:
        return self.machine.counters

    @property
    def transactions(self) -> Transactions:
        return self.machine.transactions

    @property
    def calls(self) -> dict[str, SipCall]:
        return {c.call_id: self.media[c] for c in self.machine.calls.values() if c in self.media}

    # -- in ----------------------------------------------------------------------------------

    def handle(self, data: bytes, peer: Peer) -> None:
        """One message from a transport."""
        self._apply(self.machine.receive(data, peer, self._now()))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _fire(self, when: float) -> None:
        self._timer = None
        now = max(self._now(), when)  # the loop may run a timer a hair early
        actions = self.machine.handle_timeout(now)
        if now >= self._media_check:
            self._media_check = now + MEDIA_CHECK_S
            actions = [*actions, *self._check_media(now)]
        self._apply(actions)

    def _check_media(self, now: float) -> list[Action]:
        """End streams silent past ``rtp_timeout_s``; tell the machine of calls left without."""
        out: list[Action] = []
        for call in list(self.machine.calls.values()):
            media = self.media.get(call)
            if media is None:
                continue
            cfg = self.cfg
            for receiver, held in media.timed_out(now, cfg.rtp_timeout_s, cfg.hold_timeout_s):
                if held:
                    self.ctx.counters.hold_timeouts += 1
                    what = "on hold for %.0f s (hold_timeout_s): ending the stream"
                    self.ctx.warn(f"%s: {what}", receiver.name, cfg.hold_timeout_s)
                    self._spawn(receiver.finish("hold timeout"))
                    continue
                self.ctx.counters.timeouts += 1
                timeout = cfg.rtp_timeout_s
                self.ctx.warn("%s: no RTP for %.0f s: ending the stream", receiver.name, timeout)
                self._spawn(receiver.finish("rtp timeout"))
            if not media.receivers:
                out.extend(self.machine.media_gone(call, now))
        return out

    # -- out ---------------------------------------------------------------------------------

    def _apply(self, actions: Iterable[Action], owner: SipCall | None = None) -> None:
        """Carry out the machine's actions, then arm the timer for its next deadline.
        ``owner``: the media of a negotiation that just finished (its call may be gone)."""
        for action in actions:
            try:
                self._do(action, owner)
            except Exception:  # one action's trouble must not stop the others
                log.exception("SIP: %s failed", type(action).__name__)
        self._arm()

    def _do(self, action: Action, owner: SipCall | None) -> None:
        if isinstance(action, Send):
            send(action)
        elif isinstance(action, Log):
            if action.level == "warning":
                self.ctx.warn(action.msg, *action.args)
            elif action.level == "info":
                log.info(action.msg, *action.args)
            else:
                log.error(action.msg, *action.args, exc_info=action.exc)
        elif isinstance(action, Negotiate):
            media = self.media.get(action.call)
            if media is None:
                media = self.media[action.call] = SipCall(action.call, self.ctx)
            task = asyncio.ensure_future(self._negotiate(action, media))
            self.negotiations.add(task)
            task.add_done_callback(self.negotiations.discard)
        elif isinstance(action, UpdateMetadata):
            if action.call in self.media:
                self.media[action.call].merge_metadata(action.metadata)
        elif isinstance(action, Forget):
            if action.call in self.media:
                self.media.pop(action.call).cancelled = True
        elif isinstance(action, EndCall):
            if action.call in self.media:
                self._spawn(self.media.pop(action.call).end(action.reason))
            elif owner is not None and owner.call is action.call:
                self._spawn(owner.end(action.reason))

    def _arm(self) -> None:
        due = self.machine.deadline()
        if self.media:
            due = self._media_check if due is None else min(due, self._media_check)
        if self._timer is not None:
            if due is not None and self._timer.when() == due:
                return
            self._timer.cancel()
            self._timer = None
        if due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._fire, due)

    async def _negotiate(self, action: Negotiate, media: SipCall) -> None:
        call = action.call
        try:
            answer = await media.negotiate(action.offer, action.metadata)
        except (Cancelled, asyncio.CancelledError):
            self._apply(self.machine.negotiated(call, self._now()), media)
            if not media.cancelled:
                raise
            return
        except Rejected as exc:
            self._apply(self.machine.negotiated(call, self._now(), rejected=exc), media)
            return
        except Exception as exc:
            log.exception("call %s: answering the offer failed", call.call_id)
            self._apply(self.machine.negotiated(call, self._now(), error=str(exc)), media)
            return
        sdp = answer.to_text().encode()
        self._apply(self.machine.negotiated(call, self._now(), answer=sdp), media)
        if action.initial and self.machine.calls.get(call.call_id) is call:
            legs = [
                f"{r.stream.info.leg}:{r.codec_name}@{r.port}"
                for r in media.receivers.values()
                if r.stream
            ]
            where = (call.call_id, call.peer.ip, call.peer.port, ", ".join(legs))
            log.info("call %s from %s:%d answered: %s", *where)

    def _spawn(self, coro: Coroutine[Any, Any, None] | asyncio.Future[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop taking calls; BYE and end every call (its streams score what they hold)."""
        for task in list(self.negotiations):  # endings run on: their streams must close
            task.cancel()
        self._apply(self.machine.close(self._now()))
        while self.tasks or self.negotiations:
            await asyncio.gather(*self.tasks, *self.negotiations, return_exceptions=True)
        self.machine.transactions.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
