"""simrun's engine: experiment config -> hardware + models + workloads -> SimPy run -> tables."""

__version__ = "0.2.0"   # 0.2: the output contract of docs/outputs.md
