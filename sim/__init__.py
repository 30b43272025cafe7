"""simrun's engine: experiment config -> hardware + models + workloads -> SimPy run -> tables."""

__version__ = "0.1.0"
