"""lstm_reviews: an LSTM cell written out gate by gate, trained on IMDB review sentiment.

Submodules are imported on use (`from lstm_reviews import cell`), so that importing the
package does not load TensorFlow.
"""

__version__ = "0.1.0"
