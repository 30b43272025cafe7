"""simrun's engine: experiment config -> hardware + models + workloads -> SimPy run -> tables."""

__version__ = "0.3.0"   # 0.2: the output contract of docs/outputs.md; 0.3: replicates and the faults table
