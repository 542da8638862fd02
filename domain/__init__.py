"""The domain: accounts, sessions and the rules they keep. Pure: no I/O, no clock, no environment."""
