"""Training: e4e's LightningModule, its optimiser (Ranger) and progressive schedule."""
