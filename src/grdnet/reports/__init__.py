"""Reports: the self-contained HTML test report and its matplotlib plots (ROC/PR curves)."""

from grdnet.reports.html import write_report
from grdnet.reports.plots import curve_pngs

__all__ = ["curve_pngs", "write_report"]
