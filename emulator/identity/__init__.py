"""Identity: the OpenID token endpoint that issues and verifies the emulator's tokens."""
