"""Training: the loop, fine-tuning on your data, blind spots, datasets, splits and cards."""
