"""Talk to a live server's assistant API the way the page does: session, CSRF, SSE."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import httpx
from asgiref.sync import sync_to_async

from streamsite.testing.live_server import LiveServer, session_cookies
from streamsite.testing.sse import SSEParser


class AssistantClient:
    """One logged-in browser tab's HTTP side, for one live server.

    Open one with ``await AssistantClient.open(server, user)`` (logging in is a query).
    """

    def __init__(self, server: LiveServer, cookies: dict[str, str]) -> None:
        token = secrets.token_hex(16)  # Django accepts a 32-character token of the client's
        cookies = cookies | {"csrftoken": token}
        self.http = httpx.AsyncClient(
            base_url=server.url,
            cookies=cookies,
            headers={"X-CSRFToken": token},
            timeout=httpx.Timeout(30, read=60),
        )

    @classmethod
    async def open(cls, server: LiveServer, user) -> AssistantClient:
        return cls(server, await sync_to_async(session_cookies)(user))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ask(self, conversation_id: int, prompt: str) -> EventStream:
        """POST a question; return its open event stream (or raise for a refusal)."""
        body = {"prompt": prompt, "client_id": str(uuid.uuid4())}
        request = self.http.build_request(
            "POST", f"/assistant/{conversation_id}/messages", json=body
        )
        return await EventStream.open(self.http, request)

    async def follow(self, conversation_id: int, after: str | None = None) -> EventStream:
        headers = {"Last-Event-ID": after} if after else {}
        request = self.http.build_request(
            "GET", f"/assistant/{conversation_id}/stream", headers=headers
        )
        return await EventStream.open(self.http, request)

    async def stop(self, conversation_id: int, answer_id: int, position: int | None) -> dict:
        response = await self.http.post(
            f"/assistant/{conversation_id}/answers/{answer_id}/stop",
            json={} if position is None else {"position": position},
        )
        response.raise_for_status()
        return response.json()


class EventStream:
    """An open SSE response: events parsed as they arrive, each wait bounded."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SSEParser()
        self.events: list[dict] = []
        self._unread: list[dict] = []
        self._chunks = response.aiter_raw()
        self.ended = False
        self.bytes_read = 0

    @classmethod
    async def open(cls, http: httpx.AsyncClient, request: httpx.Request) -> EventStream:
        response = await http.send(request, stream=True)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            raise httpx.HTTPStatusError(
                f"{response.status_code}: {response.text}", request=request, response=response
            )
        return cls(response)

    async def next_event(self, seconds: float = 10) -> dict | None:
        """The next event, or None once the response ended."""
        async with asyncio.timeout(seconds):
            while not self._unread:
                if self.ended:
                    return None
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    self.ended = True
                    continue
                self.bytes_read += len(chunk)
                new = self.parser.feed(chunk)
                self.events += new
                self._unread += new
        return self._unread.pop(0)

    async def until(self, predicate, seconds: float = 10) -> dict:
        async with asyncio.timeout(seconds):
            while True:
                event = await self.next_event(seconds)
                if event is None:
                    raise AssertionError(f"the stream ended first: {self.events[-5:]}")
                if predicate(event):
                    return event

    async def until_done(self, seconds: float = 30) -> dict:
        return json.loads((await self.until(lambda e: e["event"] == "done", seconds))["data"])

    def text_of(self, answer_id: int) -> str:
        return "".join(
            json.loads(e["data"])["text"]
            for e in self.events
            if e["event"] == "delta" and json.loads(e["data"])["answer"] == answer_id
        )

    def last_id(self) -> str | None:
        ids = [e["id"] for e in self.events if "id" in e]
        return ids[-1] if ids else None

    async def aclose(self) -> None:
        await self.response.aclose()
