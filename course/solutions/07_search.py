# Solutions of lab 07, injected by course/run_labs.py in place of each exercise cell.

# %% ex:7.1
def rrf(lists, k=60):
    scores = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1 / (k + rank)
    return sorted(scores, key=lambda item: (-scores[item], item))

# %% ex:7.2
def graded_ndcg(ranked, rels):
    def dcg(gains):
        return sum((2**g - 1) / np.log2(pos + 1) for pos, g in enumerate(gains, start=1))

    ideal = dcg(sorted((g for g in rels.values() if g > 0), reverse=True)[:10])
    return dcg([rels.get(item, 0.0) for item in ranked[:10]]) / ideal if ideal > 0 else 0.0
