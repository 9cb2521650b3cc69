"""Lightning callbacks (image grids, metrics)."""
