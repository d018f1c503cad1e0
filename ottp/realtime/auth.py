"""The API key that protects intake and profiles (``OTTP_API_KEY``).

A client sends it as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``;
anything else is a 401. The key is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

# auto_error=False: a missing header is this module's 401, with one message for both.
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The service's key (OTTP_API_KEY)."
)
_bearer = HTTPBearer(auto_error=False, description="The service's key (OTTP_API_KEY).")


def key_matches(sent: str | None, expected: str) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """FastAPI dependency: 401 unless the request carries the service's key.

    A coroutine (it does no I/O): a plain function would cost every request a hop
    through the thread pool.

    The key is ``app.state.api_key``; ``None`` there (``ottp serve --insecure-no-key``
    without ``OTTP_API_KEY``) lets every request in.
    """
    expected = getattr(request.app.state, "api_key", None)
    if expected is None:
        return
    if key_matches(api_key, expected) or key_matches(bearer and bearer.credentials, expected):
        return
    raise HTTPException(
        status_code=401,
        detail="missing or wrong API key: send X-API-Key: <key> or Authorization: Bearer <key>",
        headers={"WWW-Authenticate": "Bearer"},
    )
