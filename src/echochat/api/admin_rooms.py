"""/api/v1/admin/categories and /api/v1/admin/rooms: the room directory (``rooms:manage``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from echochat.api.deps import ClientIP, Ctx, require
from echochat.api.schemas.rooms import (
    CategoriesOut,
    CategoryCreateIn,
    CategoryUpdateIn,
    RoomAdminCreateIn,
    RoomAdminUpdateIn,
)
from echochat.domain.events_rooms import CategoryPublic, RoomDetail
from echochat.services import rooms, rooms_admin
from echochat.services.accounts import Principal

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

Manager = Annotated[Principal, Depends(require("rooms:manage"))]
CategoryId = Annotated[int, Path(ge=1, le=2**62)]
RoomId = Annotated[int, Path(ge=1, le=2**62)]
NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.get("/categories", response_model=CategoriesOut)
async def list_categories(_: Manager, ctx: Ctx) -> CategoriesOut:
    return CategoriesOut(categories=await rooms.categories(ctx))


@router.post("/categories", status_code=status.HTTP_201_CREATED, response_model=CategoryPublic)
async def create_category(
    body: CategoryCreateIn, principal: Manager, ctx: Ctx, ip: ClientIP
) -> CategoryPublic:
    return await rooms_admin.create_category(
        ctx, principal, name=body.name, slug=body.slug, position=body.position, ip=ip
    )


@router.patch("/categories/{category_id}", response_model=CategoryPublic)
async def update_category(
    category_id: CategoryId, body: CategoryUpdateIn, principal: Manager, ctx: Ctx, ip: ClientIP
) -> CategoryPublic:
    return await rooms_admin.update_category(
        ctx, principal, category_id, name=body.name, slug=body.slug, position=body.position, ip=ip
    )


@router.delete("/categories/{category_id}", status_code=NO_CONTENT)
async def delete_category(
    category_id: CategoryId, principal: Manager, ctx: Ctx, ip: ClientIP
) -> Response:
    """Refused while rooms are in it (409 ``category_not_empty``)."""
    await rooms_admin.delete_category(ctx, principal, category_id, ip=ip)
    return Response(status_code=NO_CONTENT)


@router.post("/rooms", status_code=status.HTTP_201_CREATED, response_model=RoomDetail)
async def create_room(
    body: RoomAdminCreateIn, principal: Manager, ctx: Ctx, ip: ClientIP
) -> RoomDetail:
    """A public room."""
    return await rooms_admin.create_room(
        ctx,
        principal,
        name=body.name,
        topic=body.topic,
        category_id=body.category_id,
        capacity=body.capacity,
        ip=ip,
    )


@router.patch("/rooms/{room_id}", response_model=RoomDetail)
async def update_room(
    room_id: RoomId, body: RoomAdminUpdateIn, principal: Manager, ctx: Ctx, ip: ClientIP
) -> RoomDetail:
    given = body.model_fields_set
    return await rooms_admin.update_room(
        ctx,
        principal,
        room_id,
        name=body.name,
        topic=body.topic,
        category_id=body.category_id if "category_id" in given else rooms_admin.UNSET,
        capacity=body.capacity if "capacity" in given else rooms_admin.UNSET,
        ip=ip,
    )


@router.delete("/rooms/{room_id}", status_code=NO_CONTENT)
async def delete_room(room_id: RoomId, principal: Manager, ctx: Ctx, ip: ClientIP) -> Response:
    """Any room or group; its members are told."""
    await rooms_admin.delete_room(ctx, principal, room_id, ip=ip)
    return Response(status_code=NO_CONTENT)
