"""Serving at cluster scale: routing turns over replicas (router), KV offload below HBM (offload), SLO attainment and
goodput (slo), and the most load a deployment holds within them (capacity)."""
