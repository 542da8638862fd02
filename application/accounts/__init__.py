"""Registering an account and verifying its address, one's own profile, and what operators do to
accounts."""
