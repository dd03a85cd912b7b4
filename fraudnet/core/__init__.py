"""The sans-IO core: no sockets, files, threads, clocks or unseeded randomness.

Only :mod:`fraudnet.errors` and numeric/crypto/encoding libraries may be
imported here (enforced by ``tests/test_architecture.py``).
"""
