"""A distributed job's merged profile as Markdown (report.md) and a terminal summary."""
from __future__ import annotations

from dlprof.analysis.ranks import RankAnalysis


class DistributedMarkdownRenderer:
    def render(self, a: RankAnalysis) -> str:
        out = [f"# dlprof: distributed job, {a.world_size} ranks", ""]
        if a.stragglers:
            out += [f"**Stragglers:** {', '.join(f'rank {r}' for r in a.stragglers)}", ""]
        else:
            out += ["**No straggler:** the ranks' data waits are within each other's spread.", ""]
        out += [f"- {e}" for e in a.evidence]
        if a.evidence:
            out.append("")
        out += ["## Per rank", "",
                "| rank | host | cores/rank | sampler | num_workers | batches | wait ms | fetch ms | step ms | wait % | samples/s | verdict |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in a.table.itertuples(index=False):
            flag = " (straggler)" if r.rank in a.stragglers else ""
            out.append(f"| {r.rank}{flag} | {r.host} | {r.cores_per_rank} | {r.sampler} | {r.num_workers} | {r.batches} | "
                       f"{r.wait_ms:.2f} | {r.fetch_ms:.2f} | {r.step_ms:.2f} | {r.wait_pct:.1f} | "
                       f"{r.samples_per_s:,.0f} | {r.verdict} |")
        if a.recommendations:
            out += ["", "## Recommendations", ""] + [f"- {x}" for x in a.recommendations]
        out += ["", "In DistributedDataParallel every step ends in an all-reduce, so the other ranks show a "
                "straggler's data stall as a longer step: read wait and step together."]
        return "\n".join(out) + "\n"
