"""A finished model for other programs: the SavedModel that takes raw text, its warm-up
requests, and the Predictor that loads and calls it."""
