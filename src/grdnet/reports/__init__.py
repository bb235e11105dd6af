"""Reports: the self-contained HTML test report and matplotlib plots (ROC/PR, training curves)."""

from grdnet.reports.html import write_report
from grdnet.reports.plots import curve_pngs, plot_training_curves

__all__ = ["curve_pngs", "plot_training_curves", "write_report"]
