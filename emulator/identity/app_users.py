"""More application users in one org: each its own client id, secret and systemuser, so each has
its own service-protection budget (Dataverse counts per user). ``Emulator(app_users=4)`` asks
for them; the first is always the default app user of ``defaults``."""

from __future__ import annotations

import uuid
from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.identity.provider import IdentityProvider


def add_app_users(identity: IdentityProvider, store: Any, count: int) -> list[tuple[str, str]]:
    """Register ``count`` extra app users (client and systemuser); returns their (client id, secret)."""
    added = []
    for n in range(1, count + 1):
        client_id = str(uuid.uuid5(uuid.UUID(defaults.CLIENT_ID), f"app-user-{n}"))
        secret = f"{defaults.CLIENT_SECRET}-{n}"
        oid = str(uuid.uuid5(uuid.UUID(defaults.APP_USER_OBJECT_ID), f"app-user-{n}"))
        identity.clients[client_id] = secret
        identity.app_user_oids[client_id] = oid
        store.insert("systemuser", {
            "fullname": f"# emulator-app-{n}", "firstname": "#", "lastname": f"emulator-app-{n}",
            "domainname": f"{client_id}@emulator.test", "applicationid": client_id,
            "azureactivedirectoryobjectid": oid, "accessmode": 4, "isdisabled": False,
            "businessunitid": defaults.BUSINESS_UNIT_ID}, user=defaults.APP_USER_ID)
        added.append((client_id, secret))
    return added
