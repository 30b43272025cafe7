"""Accelerators, nodes and fabrics -> a networkx cluster graph; deployments sharded onto it.

This package never imports `sim`: it prices hardware, it does not run anything.
"""
