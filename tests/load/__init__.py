"""Load tests: hundreds of concurrent jobs through the real services, expensive stages replaced by doubles."""
