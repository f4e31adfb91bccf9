"""The admin API for keys (scope `admin`): create, list, change limits, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from app.api_keys import service
from app.api_keys.schemas import KeyCreate, KeyCreated, KeyList, KeyOut, KeyUpdate
from app.deps import SessionDep
from app.security import AdminKey

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
def create_key(body: KeyCreate, _: AdminKey, session: SessionDep) -> KeyCreated:
    """Create a key; the answer carries the key itself, which is never shown again."""
    created = service.create_key(
        session,
        body.name,
        scopes=body.scopes,
        rate_limit_rpm=body.rate_limit_rpm,
        max_concurrent_jobs=body.max_concurrent_jobs,
        monthly_quota_s=body.monthly_quota_s,
    )
    return KeyCreated(**KeyOut.of(created.row).model_dump(), key=created.key)


@router.get("", response_model=KeyList, summary="List API keys")
def list_keys(_: AdminKey, session: SessionDep) -> KeyList:
    """Every key, revoked ones included, oldest first."""
    return KeyList(data=[KeyOut.of(row) for row in service.list_keys(session)])


@router.get("/{key_id}", response_model=KeyOut, summary="Get an API key")
def get_key(key_id: str, _: AdminKey, session: SessionDep) -> KeyOut:
    return KeyOut.of(service.get_key(session, key_id))


@router.patch("/{key_id}", response_model=KeyOut, summary="Change a key's name, scopes or limits")
def update_key(key_id: str, body: KeyUpdate, _: AdminKey, session: SessionDep) -> KeyOut:
    """Only the fields sent change; a limit sent as null goes back to the deployment's default."""
    sent = body.model_fields_set
    row = service.update_key(
        session,
        key_id,
        name=body.name,
        scopes=body.scopes,
        limits={field: getattr(body, field) for field in service.LIMIT_FIELDS if field in sent},
    )
    return KeyOut.of(row)


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key")
def revoke_key(key_id: str, _: AdminKey, session: SessionDep) -> KeyOut:
    """Revoke a key: it gets 401 from now on. The row stays, so its jobs and usage keep their owner."""
    return KeyOut.of(service.revoke_key(session, key_id))
