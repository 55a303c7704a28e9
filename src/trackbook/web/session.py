"""The dashboard's session cookie and CSRF checks."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from trackbook.accounts import users
from trackbook.accounts.users import Session
from trackbook.keyring import same_secret
from trackbook.metrics import current_account
from trackbook.services import Services, services_of

COOKIE = "tb_session"
SIGNIN_CSRF_COOKIE = "tb_signin"


class SignInRequired(Exception):
    """No valid session: the answer is a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class BadCsrf(Exception):
    """A form arrived without this session's CSRF token."""


def signin_url(next_path: str) -> str:
    return f"/signin?next={quote(next_path, safe='/')}"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


async def current_session(
    request: Request, services: Annotated[Services, Depends(services_of)]
) -> Session:
    token = request.cookies.get(COOKIE)
    session = None
    if token:
        session = await services.db.query(users.session_of, token, now=services.clock.now())
    if session is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    current_account.set(session.user.account_id)
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def checked_form(request: Request, session: Session) -> FormData:
    """The posted form, once its CSRF token is this session's."""
    form = await request.form()
    token = form.get("csrf")
    if not isinstance(token, str) or not same_secret(token, session.csrf_token):
        raise BadCsrf
    return form
