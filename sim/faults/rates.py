"""Fault rates: one Poisson process per root cause and GPU (DESIGN.md, 'Failures').

A cause counted `count` times over its study's GPU-hours arrives at count / GPU-hours per GPU-hour on every GPU
(hardware/data/faults.toml): Llama 3's 419 unexpected interruptions over 16,384 GPUs x 54 days are 419 /
21,233,664 = 1.97e-5 per GPU-hour, 0.173 per GPU-year. A scenario scales them: `none`, `llama3`, or a rate per GPU-
year for each component named. Over E GPU-hours a cause at rate r is expected r x E times (the closed form the
generator is tested against).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware import catalog as hw

SECONDS_PER_HOUR = 3600.0
HOURS_PER_YEAR = 8766.0   # 365.25 days: the GPU-year of hardware.md's 0.173 per GPU-year


@dataclass(frozen=True)
class FaultRates:
    """Causes, the component each hits, and each one's rate per GPU-second."""

    causes: tuple[str, ...]
    components: tuple[str, ...]
    per_gpu_s: np.ndarray

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(hw.fault_components()[c].scope for c in self.components)

    @property
    def total_per_gpu_s(self) -> float:
        return float(self.per_gpu_s.sum())

    def expected(self, gpu_hours: float) -> np.ndarray:
        """Faults expected of each cause over `gpu_hours` GPU-hours: rate x exposure."""
        return self.per_gpu_s * gpu_hours * SECONDS_PER_HOUR

    def per_gpu_year(self) -> dict[str, float]:
        """Each component's rate per GPU-year (its causes summed)."""
        out: dict[str, float] = {}
        for component, rate in zip(self.components, self.per_gpu_s.tolist()):
            out[component] = out.get(component, 0.0) + rate * SECONDS_PER_HOUR * HOURS_PER_YEAR
        return out


NONE = FaultRates((), (), np.zeros(0))


def study_rates(study: str, scale: float = 1.0) -> FaultRates:
    """Every cause a study counted, each at its count over the study's GPU-hours, times `scale`."""
    exposure_s = hw.fault_studies()[study].gpu_hours * SECONDS_PER_HOUR
    causes = [c for c in hw.fault_causes().values() if c.study == study]
    return FaultRates(tuple(c.name for c in causes), tuple(c.component for c in causes),
                      np.array([c.count / exposure_s * scale for c in causes]))


def component_rates(per_gpu_year: dict[str, float], scale: float = 1.0) -> FaultRates:
    """A user's own rates, per GPU-year for each component named (hardware/data/faults.toml's components); each
    component is its own cause."""
    names = tuple(per_gpu_year)
    return FaultRates(names, names, np.array([per_gpu_year[n] * scale / (HOURS_PER_YEAR * SECONDS_PER_HOUR)
                                              for n in names]))


def exposed(gpus: list[str], cluster_gpus: list[str], host_of) -> list[str]:
    """The GPUs whose faults reach replicas on `gpus`: their hosts' GPUs, in the cluster's order (a host-scoped
    cause arrives on every GPU of a host, used or not; a gpu-scoped one matters on `gpus` alone)."""
    hosts = {host_of(g) for g in gpus}
    return [g for g in cluster_gpus if host_of(g) in hosts]


def rate_per_s(rates: FaultRates, gpus: int, host_gpus: int) -> float:
    """Faults a second on `gpus` GPUs whose hosts carry `host_gpus`: gpu-scoped causes x gpus + host-scoped ones
    x host_gpus."""
    return sum(rate * (gpus if scope == "gpu" else host_gpus) for rate, scope in zip(rates.per_gpu_s.tolist(),
                                                                                      rates.scopes))


def replica_rate_per_s(rates: FaultRates, replica_gpus: list[str], cluster_gpus: list[str], host_of) -> float:
    """Faults a second that take down one replica: its GPUs' gpu-scoped causes, its hosts' host-scoped ones. A
    podcast kept on it meets none in T seconds with probability e^(-rate x T)."""
    return rate_per_s(rates, len(replica_gpus), len(exposed(replica_gpus, cluster_gpus, host_of)))


def scenario(rates: str | dict[str, float], scale: float = 1.0) -> FaultRates:
    """The rates of an experiment's [faults] `rates`: `none`, a study's name (`llama3`), or per-component rates."""
    if isinstance(rates, dict):
        return component_rates(rates, scale)
    return NONE if rates == "none" else study_rates(rates, scale)
