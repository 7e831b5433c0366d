"""A run from its configuration to a finished model: language-model pretraining, the epoch
loop as committed states, resume, and data-parallel training."""
