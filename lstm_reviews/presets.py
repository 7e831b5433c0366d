"""The bundles of defaults --preset names (Config.preset): plain data, light to import."""

# --preset: bundles of defaults. "cpu" is the fields' own defaults, the recipe measured on 2
# CPU cores. "gpu" scales the reader toward the LM-pretrained LSTMs of the literature (Dai & Le
# 2015; Miyato et al. 2017: 1024 units, 256-d embeddings, long pretraining), for one GPU; it
# has only been run scaled down on a CPU (docs/gpu.md). "quick": a first result in minutes
# on 2 CPU cores, from the archive and an empty cache. Options given explicitly win.
PRESETS = {
    "cpu": {},
    # Its accuracy and time: docs/results.md, "A first result in minutes".
    "quick": {
        # No language-model pretraining: the recipe's largest cost by far. The word vectors
        # (--pretrain-embeddings, on) stay: a one-epoch reader needs its words to start
        # meaningful, and they cost far less than the language model.
        "lm_epochs": 0,
        # Adversarial steps cost twice a plain one.
        "adversarial_epsilon": 0.0,
        # Half the recipe's units: a cheaper step.
        "units": 64,
        # The last 256 tokens of each review in training (about the median review whole):
        # long reviews are where the steps' time goes.
        "max_length": 256,
        # Judging the 27,500 validation and test reviews whole (the longest thousands of
        # tokens) costs as much as the training; the last 400 hold most reviews whole.
        "eval_max_length": 400,
        # One pass, the learning rate's cosine over it (enough: docs/results.md).
        "epochs": 1,
    },
    "gpu": {
        "vocab_size": 60000,
        "vocabulary_from": "train+unlabeled",
        "embedding_dim": 256,
        "units": 512,
        "lm_epochs": 10,
        "lm_batch_size": 256,
        "lm_negatives": 512,
        "lm_learning_rate": 1e-3,
        "input_dropout": 0.5,
        "dropout": 0.5,
        "adversarial_epsilon": 0.5,
        "epochs": 6,
        "mixed_precision": "bfloat16",
    },
}
