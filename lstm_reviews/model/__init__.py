"""The network: the LSTM cell gate by gate, its variants, the classifier around it, and the
adversarial training step."""
