"""Reports from per-query result rows (sim or live), one job per module: summary statistics
(summary.py), the paper comparison (comparison.py, with one module per paper: seed000.py, seed002.py,
seed003.py, and figures.py for what a figure is), replications' confidence intervals
(replications.py), plots (plots.py), and the sections the papers add to a results folder
(routing.py; seed003.py's crop section). Every table made from a synthetic workload carries its
provenance, so it reads as synthetic. The names below are the package's interface."""

from testbed.report.comparison import (FIGURES_BY_SEED, comparison_cells, comparison_notes, format_comparison,
                                       paper_comparison)
from testbed.report.figures import PaperFigure, Role, Unmeasurable
from testbed.report.plots import (POLICY_LEGEND, key_label, load_matplotlib, plot_breakdown, plot_crop_tradeoff,
                                  plot_delay_cdf, plot_fidelity, plot_regret, plot_reliability, plot_sweep,
                                  plot_threshold_sweep, plot_tradeoff, regret_curves)
from testbed.report.routing import routing_section
from testbed.report.replications import (SUMMARY_METRICS, comparison_replicated, replication_summary,
                                         replication_table, t_interval)
from testbed.report.seed000 import (COLLAB, DN, EH, LONG_S, NS, OVERHEAD_STAGES, PAPER_POLICIES, QG, SEED_ID, UNCAL,
                                    overhead_share)
from testbed.report.seed000 import FIGURES as PAPER_FIGURES
from testbed.report.seed002 import FIGURES as PAPER_FIGURES_002
from testbed.report.seed002 import IA
from testbed.report.seed003 import CROP_POLICIES, EC, FR, GO, RC, crop_summary
from testbed.report.seed003 import FIGURES as PAPER_FIGURES_003
from testbed.report.summary import ALL, BREAKDOWN, format_table, plain, saturation_notes, summarize

__all__ = [
    "ALL", "BREAKDOWN", "COLLAB", "CROP_POLICIES", "DN", "EC", "EH", "FIGURES_BY_SEED", "FR", "GO", "IA", "LONG_S",
    "NS", "OVERHEAD_STAGES", "PAPER_FIGURES", "PAPER_FIGURES_002", "PAPER_FIGURES_003", "PAPER_POLICIES",
    "POLICY_LEGEND", "QG", "RC", "SEED_ID", "SUMMARY_METRICS", "UNCAL", "PaperFigure", "Role", "Unmeasurable",
    "comparison_cells", "comparison_notes", "comparison_replicated", "crop_summary", "format_comparison",
    "format_table", "key_label", "load_matplotlib", "overhead_share", "paper_comparison", "plain", "plot_breakdown",
    "plot_crop_tradeoff", "plot_delay_cdf", "plot_fidelity", "plot_regret", "plot_reliability", "plot_sweep",
    "plot_threshold_sweep", "plot_tradeoff", "regret_curves", "replication_summary", "replication_table",
    "routing_section", "saturation_notes", "summarize", "t_interval",
]
