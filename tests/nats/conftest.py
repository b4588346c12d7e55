"""Real-broker tests: every test here starts its own nats-server (fixtures in tests/conftest.py)."""
