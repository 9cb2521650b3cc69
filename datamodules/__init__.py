"""Lightning data modules (image folders, synthetic inversion)."""
