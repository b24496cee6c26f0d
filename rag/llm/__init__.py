"""Chat models that answer from retrieved passages."""
