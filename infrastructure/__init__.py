"""Adapters: the stores, hasher, signer, mail transports and telemetry that implement the ports."""
