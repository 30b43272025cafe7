"""Every fitted efficiency and overhead of the cost model, in one place, with what it was fitted to.

Measured hardware ceilings (best-case matmul throughput as a share of peak) live in the hardware
catalog beside each accelerator; what is here is what no datasheet gives.
"""

# Achieved share of datasheet HBM bandwidth for the weight and KV streams of a step. Measured:
# weight loads on H100 reach 2.6-2.8 of 3.35 TB/s (78-84%, Nsight Compute on a 70B TP8 server,
# mikamirai.com 'GPU Memory Bandwidth', 2026, T3); FlashMLA decode reaches 3,000 GB/s on H800 SXM5
# (3.35 TB/s: 90%, github deepseek-ai/FlashMLA README). 0.80 is the weight-stream figure, which
# dominates decode.
HBM_EFFICIENCY = 0.80

# Fixed time per engine step outside the forward pass's kernels (scheduling, sampling, launch gaps).
# Fitted, given HBM_EFFICIENCY, to NVIDIA NIM Llama-3.3-70B FP8 on 2x H100 (TP2) at concurrency 1:
# ITL 18.58 ms at ISL 5,000 and 18.91 ms at ISL 500 (published.md section 3, T2); the kernels
# and collectives of that step price at 13.9 ms, the measured 18.6-18.9 ms leave 4.9 ms. The tests
# check both rows within 5%.
STEP_OVERHEAD_S = 4.9e-3

# Bytes per activation element exchanged by collectives and kept live during a step (BF16).
ACTIVATION_BYTES = 2.0

# Bytes per element of the embedding table and LM head: FP8 checkpoints keep them in BF16
# (DeepSeek-V3 / Kimi K2 'fp8_e4m3_block128' quantise linear layers only; models.md section 5).
EMBEDDING_BYTES = 2.0

# Share of the datasheet FP4 peak that FP4 matmuls reach. No FP4 matmul measurement (MAMF) is published
# for any of our GPUs; until the calibration fit (scripts/calibrate.py) sets it, it is B200's measured
# FP8 share (3,433 / 4,500), the nearest measured precision on the same tensor cores.
FP4_MATMUL_EFFICIENCY = 0.763
