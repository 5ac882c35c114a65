"""Torch adapter: proxy models, seeded training, forward-hook extraction, retraining."""
