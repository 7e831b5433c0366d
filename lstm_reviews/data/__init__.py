"""From the archive to batches: read IMDB, standardize and encode text, cache token ids,
batch them by length, and learn word vectors from the reviews."""
