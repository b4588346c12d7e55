"""Serving a trained student (or a local teacher): CPU server, vLLM launcher, probes.

The deployer picks a backend with :func:`choose_backend`, starts it, and
measures it with :mod:`stratos_deployer.serving.probe`. Both backends speak the
OpenAI chat API, so everything downstream is backend-agnostic.
"""
