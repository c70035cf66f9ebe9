"""The chat socket: ``ws/chat/<slug>/`` (docs/protocol.md).

A thin edge: it authenticates, parses frames (``chat.protocol``), checks permission on
every action, and hands writes to ``chat.services`` and reads to the socket's
``RoomOutbox``. How it stays cheap with thousands of sockets in a process:

- No channel-layer channel per socket. The Channels tutorial gives every socket its own
  channel and group membership, so one message costs a channel-layer delivery and a
  consumer dispatch (with a thread hop) per socket. Here the process' hub
  (``streamsite.streaming.hub``) receives a room's event once, and each socket's outbox
  writes the frame, encoded once per event, straight to the connection.
- No thread hop per frame. Channels' ``dispatch`` calls ``aclose_old_connections`` (a trip
  to a thread) before every handler; every query here runs through
  ``streamsite.streaming.db.db_call``, which hands its connection back at once, so there is
  never an old connection to close, and an idle socket holds no database connection.
- Presence and the send rate limit live in Redis when there are several processes
  (``chat.presence``, ``chat.ratelimit``). Presence reaches sockets as deltas; the first
  page of names comes with the join, later pages on request (``presence.more``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError

from chat import permissions, protocol, room_assistant, selectors, services
from chat.events import room_key
from chat.outbox import RoomOutbox
from chat.presence import get_presence, presence_leave
from chat.protocol import FORBIDDEN, INVALID, NOT_FOUND, RATE_LIMITED, TOO_LONG, ProtocolError
from chat.ratelimit import acheck_send_rate
from notifications.events import session_digest, user_key
from streamsite.observability import metrics
from streamsite.observability.logs import accept_headers, connection_event
from streamsite.server_send import server_send
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import HubUnavailable, Subscription, get_hub

logger = logging.getLogger(__name__)

#: Events buffered per socket for a slow reader; past that it is closed with 1013.
SOCKET_BUFFER_EVENTS = 1000

SOCKETS_OPEN = metrics.sockets_open.labels("chat")
#: A socket announces its user's typing at most this often.
TYPING_THROTTLE_SECONDS = 3.0
#: An alias with no channel layer behind it: the consumer gets no channel of its own.
NO_CHANNEL_LAYER = "streamsite.hub-only"


class RoomConsumer(AsyncWebsocketConsumer):
    """One socket in one room."""

    channel_layer_alias = NO_CHANNEL_LAYER

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.room = None
        self.user = None
        self.outbox: RoomOutbox | None = None
        self._writer: asyncio.Task | None = None
        self._hub = None
        self._events: Subscription | None = None
        self._in_presence = False
        self._counted = False  # in ``streamsite_sockets_open``
        self._opened_at: float | None = None  # for the lifecycle log line
        self._last_typing = float("-inf")

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # disconnect() does not run when the server cancels the consumer (shutdown).
            await self._release()

    async def dispatch(self, message):
        # Channels awaits aclose_old_connections() (a thread hop) before every handler.
        # Every query here runs through db_call, which closes its connection at once, so
        # there is nothing to close: skipping it halves the cost of a frame.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # Connect and disconnect ----------------------------------------------------------------

    async def connect(self):
        # Accept first, then refuse with a code: a refusal at the handshake reaches browsers
        # as 1006, which they cannot tell from a network failure.
        await self.accept(headers=accept_headers(self.scope))
        self._opened_at = time.monotonic()
        connection_event("chat socket", "opened")
        user = self.scope.get("user")
        if not permissions.is_active_user(user):
            await self.close(protocol.CLOSE_NOT_LOGGED_IN)
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        room = await selectors.ajoining_room(slug)
        if room is None:
            await self.close(protocol.CLOSE_NOT_FOUND)
            return
        if not await permissions.acan_read(user, room):
            await self.close(protocol.CLOSE_FORBIDDEN)
            return
        self.room, self.user = room, user
        try:
            await self._join()
        except HubUnavailable:
            logger.warning("chat socket refused: the channel layer is unavailable")
            await self.close(protocol.CLOSE_TRY_AGAIN_LATER)
        except Exception as error:
            if isinstance(error, OSError) and not isinstance(error, TimeoutError):
                # The client left while the socket joined (uvicorn's ClientDisconnected when
                # the join's first frame is sent): normal, and nothing is left to close.
                logger.info("chat socket in room %s: the client left during the join", room.pk)
                return
            logger.exception("chat socket could not join room %s", room.pk)
            await self.close(protocol.CLOSE_INTERNAL_ERROR)

    async def _join(self) -> None:
        """Subscribe, then read: what is published from here on reaches the socket."""
        room, user = self.room, self.user
        hub = self._hub = get_hub()
        events = self._events = Subscription(room_key(room.pk), SOCKET_BUFFER_EVENTS)
        # Plain add/remove rather than subscribe()'s context managers: thousands of
        # sockets each keeping two suspended generators and an exit stack add up.
        await hub.add(room_key(room.pk), events)
        # The user's own key carries "session.ended": a logout closes this socket too.
        await hub.add(user_key(user.pk), events)
        session_key = self.scope["session"].session_key if "session" in self.scope else None
        self.outbox = RoomOutbox(
            room=room,
            user=user,
            session=session_digest(session_key) if session_key else None,
            events=events,
            send=server_send(self.scope, self.base_send),
            close=self.close,
        )
        self._in_presence = True
        presence = await get_presence().join(room.pk, user.pk, user.get_username())
        await self.outbox.start(presence, await selectors.ajoining_history(room))
        self._writer = asyncio.create_task(self._write(), name=f"chat-outbox-{room.pk}")
        self._counted = True
        SOCKETS_OPEN.inc()

    async def _write(self) -> None:
        try:
            await self.outbox.run()
        except asyncio.CancelledError:
            raise
        except OSError:
            pass  # the client went away mid-send (uvicorn's ClientDisconnected): nothing to do
        except Exception:
            # Anything else is a bug: logged, and the client reconnects and resumes.
            if not self.outbox.closed:
                logger.exception("chat outbox failed in room %s", self.room.pk)
                with suppress(Exception):  # the connection may be gone already
                    await self.outbox.close(protocol.CLOSE_INTERNAL_ERROR)

    async def disconnect(self, code):
        await self._release()
        if self._opened_at is not None:
            connection_event("chat socket", "closed", started=self._opened_at, code=code)

    async def _release(self) -> None:
        """Stop the writer, leave the hub and presence. Idempotent, short."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self._counted:
            self._counted = False
            SOCKETS_OPEN.dec()
        events, self._events = self._events, None
        if events is not None:
            self._hub.remove(room_key(self.room.pk), events)
            self._hub.remove(user_key(self.user.pk), events)
        if self._in_presence:
            self._in_presence = False
            await presence_leave(self.room.pk, self.user.pk)

    # Frames from the client ----------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        if self.outbox is None or not self.outbox.closed:
            await self.base_send(protocol.websocket_send(text))

    async def receive(self, text_data=None, bytes_data=None):
        if self.outbox is None or self.outbox.closed:
            return  # refused or closing: nothing more is read
        try:
            if text_data is None:
                if len(bytes_data or b"") > protocol.MAX_FRAME_BYTES:
                    raise protocol.FrameTooLarge
                raise ProtocolError(INVALID, "Frames must be JSON text, not binary.")
            protocol.check_frame_size(text_data)
            await self._handle(protocol.parse_frame(text_data))
        except ProtocolError as error:
            await self.send_text(protocol.error_frame(error))
        except protocol.FrameTooLarge:
            await self.outbox.close(protocol.CLOSE_TOO_LARGE)
        except OSError:
            pass  # the client left while we answered (uvicorn's ClientDisconnected)
        except Exception:
            # Not the client's doing (the database is down, a bug): log it, close with 1011,
            # and let the client reconnect and resume, instead of dying mid-dispatch.
            logger.exception("chat socket failed handling a frame in room %s", self.room.pk)
            await self.outbox.close(protocol.CLOSE_INTERNAL_ERROR)

    async def _handle(self, request: protocol.Request) -> None:
        kind = type(request)
        if kind is protocol.Ping:
            await self.send_text(protocol.PONG)
        elif kind is protocol.Send:
            try:
                await self._send_message(request)
            except ProtocolError as error:
                metrics.chat_sends_refused.labels(error.code).inc()  # a few fixed codes
                raise
        elif kind is protocol.Typing:
            await self._typing()
        elif kind is protocol.History:
            await self._require_read()
            if not self.outbox.request_history(request.before, request.limit):
                raise _too_many_reads()
        elif kind is protocol.Resume:
            await self._require_read()
            if not self.outbox.request_resume(request.after):
                raise _too_many_reads()
        elif kind is protocol.PresenceMore:
            await self._require_read()
            if not self.outbox.request_presence(request.after):
                raise _too_many_reads()
        elif kind is protocol.Read:
            await self._require_read()
            await services.amembership_mark_read(
                user=self.user, room=self.room, up_to=request.up_to
            )
        elif kind is protocol.Stop:
            await self._stop_answer(request)

    async def _require_read(self) -> None:
        if not await permissions.acan_read(self.user, self.room):
            raise ProtocolError(FORBIDDEN, "You cannot read this room.")

    async def _send_message(self, request: protocol.Send) -> None:
        client_id = request.client_id
        retry_after = await acheck_send_rate(self.user.pk)
        if retry_after is not None:
            raise ProtocolError(
                RATE_LIMITED,
                "You are sending too fast; try again soon.",
                client_id=client_id,
                retry_after=retry_after,
            )
        try:
            message, _created = await services.amessage_post(
                user=self.user, room=self.room, client_id=client_id, body=request.body
            )
        except ValidationError as error:
            code = TOO_LONG if getattr(error, "code", None) == "too_long" else INVALID
            raise ProtocolError(code, " ".join(error.messages), client_id=client_id) from None
        except PermissionDenied as error:
            raise ProtocolError(FORBIDDEN, str(error), client_id=client_id) from None
        # message_post returned: the row is committed (and broadcast after the commit).
        await self.send_text(protocol.ack_frame(client_id, message.pk))
        if message.assistant_unavailable:
            await self.send_text(
                protocol.assistant_unavailable_frame(
                    client_id, message.pk, message.assistant_unavailable
                )
            )

    async def _stop_answer(self, request: protocol.Stop) -> None:
        """Stop the assistant's answer in a message (who asked, moderators, staff)."""
        try:
            await db_call(
                room_assistant.message_answer_stop_by_id,
                user=self.user,
                room=self.room,
                message_id=request.id,
                position=request.position,
            )
        except ObjectDoesNotExist:
            raise ProtocolError(NOT_FOUND, "No answer of the assistant to stop here.") from None
        except PermissionDenied as error:
            raise ProtocolError(FORBIDDEN, str(error)) from None
        # Nothing to answer: the answer's message.done reaches every socket of the room.

    async def _typing(self) -> None:
        now = time.monotonic()
        if now - self._last_typing < TYPING_THROTTLE_SECONDS:
            return
        self._last_typing = now
        try:
            await services.atyping_announce(user=self.user, room=self.room)
        except PermissionDenied as error:
            raise ProtocolError(FORBIDDEN, str(error)) from None


def _too_many_reads() -> ProtocolError:
    return ProtocolError(RATE_LIMITED, "Too many history requests at once; wait for the replies.")
