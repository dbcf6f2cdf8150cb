"""Fixed identities of the embedded emulator's org, shared by its identity provider and its seed.

Fixed (not random) so that tests, docs and users' own suites can name them. The client secret is
only ever valid against the emulator.
"""

TENANT_ID = "00000000-0000-4000-8000-00000000e1e1"
ORGANIZATION_ID = "00000000-0000-4000-8000-0000000000a1"
ORGANIZATION_NAME = "Emulated Org"
BUSINESS_UNIT_ID = "00000000-0000-4000-8000-0000000000b1"

# The confidential client (app registration) and the application user it maps to in Dataverse.
CLIENT_ID = "00000000-0000-4000-8000-00000000c11e"
CLIENT_SECRET = "emulator-secret-not-for-production"
APP_USER_ID = "00000000-0000-4000-8000-0000000000a2"          # systemuserid of the application user
APP_USER_OBJECT_ID = "00000000-0000-4000-8000-0000000000a3"   # its Entra object id (token `oid`)

# The interactive user that the authorize endpoint signs in (authorization-code flow).
USER_ID = "00000000-0000-4000-8000-0000000000d1"              # systemuserid
USER_OBJECT_ID = "00000000-0000-4000-8000-0000000000d2"       # Entra object id (token `oid`)
USER_NAME = "Avery Admin"
USER_EMAIL = "avery@emulator.test"

# Rows every store is seeded with (see emulator/storage/seed.py).
USD_ID = "00000000-0000-4000-8000-0000000000c1"          # transactioncurrencyid of US Dollar, the base currency
TEAM_ID = "00000000-0000-4000-8000-0000000000e1"         # the default team of the business unit
