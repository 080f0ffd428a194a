"""Middleware that keeps the whole stack async-capable.

WhiteNoise's middleware is sync-only; under ASGI Django would run every request
(including long polls) through a thread for it. This wrapper serves static files
through WhiteNoise and passes every other request straight on, sync or async.
The Permissions-Policy header is set by a middleware of the same kind.
"""

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware:
    """WhiteNoise static file serving that is both sync- and async-capable."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        with warnings.catch_warnings():
            # Before the first collectstatic there is no STATIC_ROOT; files come from finders.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            self.whitenoise = WhiteNoiseMiddleware(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        return self.whitenoise(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        if not path.startswith(self.whitenoise.static_prefix):
            return await self.get_response(request)
        if self.whitenoise.autorefresh:
            static_file = await sync_to_async(self.whitenoise.find_file)(path)
        else:
            static_file = self.whitenoise.files.get(path)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.whitenoise.serve)(static_file, request)
        if response.streaming and not response.is_async:
            # Read the file in a worker thread, chunk by chunk, instead of in the event loop.
            response.streaming_content = _in_thread(response.streaming_content)
        return response


async def _in_thread(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(chunks)
    read = sync_to_async(lambda: next(iterator, None), thread_sensitive=False)
    while (chunk := await read()) is not None:
        yield chunk


class PermissionsPolicyMiddleware:
    """Sets ``Permissions-Policy`` on every response: each feature of
    SWITCHYARD_PERMISSIONS_POLICY_DENY is refused to the page and to every frame."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.header = ", ".join(f"{f}=()" for f in settings.SWITCHYARD_PERMISSIONS_POLICY_DENY)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        return self._set(self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return self._set(await self.get_response(request))

    def _set(self, response: HttpResponseBase) -> HttpResponseBase:
        if self.header:
            response.headers.setdefault("Permissions-Policy", self.header)
        return response
