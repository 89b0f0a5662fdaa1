"""Files that `cellbench demo` runs: the demo plan."""
