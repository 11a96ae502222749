"""The layer activation explorer: what each layer of a network computes for an image."""
