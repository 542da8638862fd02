"""The benchmark's peer: a conventional CRUD auth service, as the fastapi-users documentation
builds one (SQLAlchemy async + asyncpg on PostgreSQL, a bearer JWT, its users router), with a
bare endpoint beside it. `make bench` measures its "who am I" (`GET /users/me`: the JWT checked,
then the user row read by id) beside tessera's `GET /api/users/me` on the same PostgreSQL.

It runs only in its own virtualenv (bench/.peer-venv, made by bench/peer.py from
requirements.txt); it is no part of tessera, nor of the project's type check.

    PEER_DATABASE_URL=postgresql+asyncpg://... uvicorn --app-dir bench/peer_app app:app
    PEER_DATABASE_URL=... python bench/peer_app/app.py seed COUNT PASSWORD
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ["PEER_DATABASE_URL"]
SECRET = os.environ.get("PEER_SECRET", "bench peer secret, not for production use")


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


engine = create_async_engine(DATABASE_URL)
session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_maker() as session:
        yield session


async def get_user_db(
    session: AsyncSession = Depends(get_session),
) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
    yield SQLAlchemyUserDatabase(session, User)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager(
    user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),
) -> AsyncIterator[UserManager]:
    yield UserManager(user_db)


def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


auth_backend = AuthenticationBackend(
    name="jwt",
    transport=BearerTransport(tokenUrl="auth/jwt/login"),
    get_strategy=get_jwt_strategy,
)
users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])

app = FastAPI()
app.include_router(users.get_auth_router(auth_backend), prefix="/auth/jwt", tags=["auth"])
app.include_router(users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"])
app.include_router(users.get_users_router(UserRead, UserUpdate), prefix="/users", tags=["users"])


@app.get("/health")
async def health() -> dict[str, str]:
    """The bare endpoint: the same server, workers and framework, no work."""
    return {"status": "ok"}


def email(n: int) -> str:
    return f"user{n}@bench.example.com"


async def seed(count: int, password: str) -> None:
    """COUNT active, verified users with one precomputed hash (the service's own hasher), in
    batches: what COUNT registrations leave behind, without COUNT argon2 hashes."""
    hashed = PasswordHelper().hash(password)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        for start in range(0, count, 5000):
            rows = [
                {
                    "id": uuid.uuid4(),
                    "email": email(n),
                    "hashed_password": hashed,
                    "is_active": True,
                    "is_superuser": False,
                    "is_verified": True,
                }
                for n in range(start, min(start + 5000, count))
            ]
            await conn.execute(insert(User), rows)
    await engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "seed":
        sys.exit("usage: app.py seed COUNT PASSWORD")
    asyncio.run(seed(int(sys.argv[2]), sys.argv[3]))
