"""cellbench channel drivers for SCPI instruments: source-measure units, bidirectional
supplies, and supply + load pairs, with emulated instruments that have a cell behind them."""
