"""Which pooling part carries each word's share of the logit: the ledger through max pooling
alone, through mean pooling alone, and through both.

    python benchmarks/ledger_pooling.py RUN_DIR [--data PATH] [--limit 5000]

A is linear in the head's weights (the gates and each unit's argmax step do not depend on
them), so A = A_max + A_mean exactly: zeroing one part of the logit kernel leaves the other
part's share. Needs a max_mean run. Minutes on 2 CPU cores for 5,000 reviews.
"""

import argparse

from lstm_reviews.config import DEFAULT_WORDS
from lstm_reviews.inspection import ledger_words, word_report
from lstm_reviews.rundir import load_run

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run_dir")
parser.add_argument("--data", help="aclImdb dir or tarball (default: the run's config)")
parser.add_argument("--limit", type=int, default=5000, help="seeded sample of test reviews")
args = parser.parse_args()
run = load_run(args.run_dir)
reviews = word_report.load_test_reviews(run, data=args.data, limit=args.limit)
words = DEFAULT_WORDS
ids = {w: i for w, i in word_report.word_vocabulary_ids(run.vocabulary, words).items() if i}
head = run.model.get_layer("logit")
kernel, bias = head.get_weights()
half = kernel.shape[0] // 2  # pooled = [max over time, mean over time]
results = {}
for part, rows in (("max", slice(half, None)), ("mean", slice(0, half)), ("both", slice(0, 0))):
    k = kernel.copy()
    k[rows] = 0.0  # silence the other part
    head.set_weights([k, bias])
    report = ledger_words.word_ledger(run.model, reviews, ids, n_boot=100)
    results[part] = {w: report["words"][w]["mean_abs_A"] for w in ids}
    results[part]["(all)"] = report["all"]["mean_abs_A"]
head.set_weights([kernel, bias])
print(f"{len(reviews)} test reviews (seeded sample); mean |A| through each pooling part")
print(f"{'word':<9}" + "".join(f"{p:>10}" for p in results))
for w in list(ids) + ["(all)"]:
    print(f"{w:<9}" + "".join(f"{results[p][w]:10.4f}" for p in results))
for p in results:
    r = results[p]
    print(
        p,
        "awesome/should",
        round(r["awesome"] / r["should"], 2),
        "amazing/should",
        round(r["amazing"] / r["should"], 2),
        "amazing/this",
        round(r["amazing"] / r["this"], 2),
    )
