"""The ``core`` driver: the user record's password field holds an scrypt hash."""

from __future__ import annotations

from raftcore.auth import verify_password
from zones.authdrivers import BAD_LOGIN, AuthFailed, Credentials, Identity, check_user


class CoreDriver:
    name = "core"

    def authenticate(self, creds: Credentials, user: dict | None) -> Identity:
        record = check_user(user, self.name)
        stored = record.get("password")
        if not creds.secret or not isinstance(stored, str):
            raise AuthFailed(BAD_LOGIN)
        if not verify_password(creds.secret, stored):
            raise AuthFailed(BAD_LOGIN)
        return Identity(username=record["name"], driver=self.name, stored_secret=stored)
