"""Admin routes: users and roles. Every change is audited with old value, new value and reason."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edge.web.auth import ROLES, Session
from edge.web.deps import ADMIN, ctx_of, page, require

router = APIRouter()


class NewUser(BaseModel):
    username: str = Field(..., max_length=32)
    full_name: str = Field(..., min_length=1, max_length=100)
    role: str
    password: str = Field(..., max_length=256)
    reason: str = Field(..., min_length=3, max_length=200)


class Change(BaseModel):
    reason: str = Field(..., min_length=3, max_length=200)
    role: str | None = None
    password: str | None = Field(None, max_length=256)


@router.get("/admin/users")
def users_page(request: Request, _s: Session = Depends(require(*ADMIN))) -> Response:
    return page(request, "admin_users.html", users=ctx_of(request).users.list(), roles=ROLES)


@router.get("/api/admin/users")
def users_list(request: Request, _s: Session = Depends(require(*ADMIN))) -> list[dict[str, Any]]:
    return ctx_of(request).users.list()


@router.post("/api/admin/users")
def users_create(body: NewUser, request: Request, s: Session = Depends(require(*ADMIN))) -> dict:
    try:
        u = ctx_of(request).users.create(
            body.username,
            body.full_name,
            body.role,
            body.password,
            by=s.username,
            reason=body.reason,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"username": u["username"], "role": u["role"]}


@router.post("/api/admin/users/{username}/{op}")
def users_change(
    username: str, op: str, body: Change, request: Request, s: Session = Depends(require(*ADMIN))
) -> dict[str, Any]:
    ctx = ctx_of(request)
    if username == s.username and op in ("disable", "role"):
        raise HTTPException(409, "an admin cannot disable or demote their own account")
    try:
        if op == "disable":
            ctx.users.set_disabled(username, True, s.username, body.reason)
            ctx.sessions.drop_user(username)
        elif op == "enable":
            ctx.users.set_disabled(username, False, s.username, body.reason)
        elif op == "role" and body.role:
            ctx.users.set_role(username, body.role, s.username, body.reason)
            ctx.sessions.update_user(username, body.role)
        elif op == "password" and body.password:
            ctx.users.set_password(username, body.password, s.username, body.reason)
            ctx.sessions.drop_user(username)
        else:
            raise HTTPException(422, "operation: disable, enable, role (with role), password")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"username": username, "op": op}
