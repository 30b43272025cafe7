"""A few hundred mutants of the shipped experiments through the command line, in this process: each is
refused in one line (the same line `simrun describe` gives) or runs to finite tables, never a traceback
(scripts/fuzz_experiments.py; its docstring lists the mutations)."""
from conftest import script


def test_mutated_experiments_are_refused_in_one_line_or_run_to_finite_tables():
    fuzz = script("fuzz_experiments")
    report = fuzz.fuzz(cases=300, seed=20261202, budget_s=5.0)
    assert sum(report.counts.values()) == 300
    assert report.counts["refused"] > 150 and report.counts["ran"] > 10   # both roads are exercised
    # Valid mutants stopped at their 5 s budget (a deleted duration is the default 10 hours): a few at
    # most; many would mean a hang or a slow path the fuzz no longer sees through.
    assert report.counts["slow"] <= 3, [o.mutation for o in report.slowest]
    assert not report.findings, "\n".join(f"{f.kind}: {f.mutation}: {f.detail}" for f in report.findings)
