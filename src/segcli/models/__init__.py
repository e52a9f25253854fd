"""Models: smp architecture/encoder factory, losses, and the LightningModule."""
