"""Serving at cluster scale: routing turns over replicas (router)."""
