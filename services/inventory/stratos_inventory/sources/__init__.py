"""Where servers come from: a YAML catalog, or a cloud's product API."""
