"""Flower coordination: the augmentation strategy (metrics only, never aggregates weights)."""
