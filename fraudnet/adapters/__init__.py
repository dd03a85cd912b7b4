"""Thin adapters around the core: stream (Faust), p2p (libp2p), storage, HTTP."""
