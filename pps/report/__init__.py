"""What users read: text tables, plots and the HTML report, made from results directories only."""
