"""Baseline: what a user writes by hand with one ``httpx.AsyncClient``: post the Chat Completions
JSON, check the status, parse the JSON, pull out the text and usage."""

from __future__ import annotations

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

    async def aclose(self) -> None:
        await self._client.aclose()


async def make(base_url: str) -> Client:
    return Client(base_url)
