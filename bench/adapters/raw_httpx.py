"""Baseline: what a user writes by hand with one ``httpx.AsyncClient``: post the Chat Completions
JSON, check the status, parse the JSON, pull out the text and usage."""

from __future__ import annotations

import json
from typing import Any

import httpx

NAME = "raw httpx.AsyncClient"


class Client:
    def __init__(self, base_url: str) -> None:
        self._url = base_url + "/chat/completions"
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        self._headers = {"authorization": "Bearer sk-bench"}

    async def call(self, messages: list[dict[str, Any]]) -> str:
        r = await self._client.post(
            self._url, json={"model": "bench-model", "messages": messages}, headers=self._headers
        )
        r.raise_for_status()
        data = r.json()
        usage = data["usage"]
        _ = usage["prompt_tokens"], usage["completion_tokens"]
        return data["choices"][0]["message"]["content"]

    async def stream(self, messages: list[dict[str, Any]]) -> int:
        body = {"model": "bench-model", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        text: list[str] = []
        chunks = 0
        async with self._client.stream("POST", self._url, json=body, headers=self._headers) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                event = json.loads(data)
                chunks += 1
                for choice in event["choices"]:
                    text.append(choice["delta"].get("content") or "")
                if event.get("usage"):
                    _ = event["usage"]["prompt_tokens"], event["usage"]["completion_tokens"]
        _ = "".join(text)
        return chunks

    async def aclose(self) -> None:
        await self._client.aclose()


async def make(base_url: str) -> Client:
    return Client(base_url)
