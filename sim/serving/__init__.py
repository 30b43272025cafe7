"""Serving at cluster scale: routing turns over replicas (router), KV offload below HBM (offload)."""
