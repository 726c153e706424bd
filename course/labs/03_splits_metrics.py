# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 3：数据切分与评估指标
#
# 对应种子文档 **3.2.2 模型训练**（数据切分）和 **Q4 性能如何评估**。种子说"用准确率、召回率、F1 评估"，
# 但没说在什么协议下评估。同一个模型，换个协议，数字能差好几倍。
#
# **目标**
# - 推荐用留一法切分，搜索按查询切分，并弄清为什么；
# - 亲手实现 NDCG，看懂 HR、NDCG、MRR、精确率、召回率和 F1 之间的关系；
# - 比较全量排序和采样排序；
# - 复现一个已发表基线里的"热度泄漏"。

# %% [markdown] tags=["en"]
# # Lab 3: Splits and metrics
#
# Seed sections **3.2.2 (training: the data split)** and **Q4 (how to evaluate)**. The seed says "evaluate
# with accuracy, recall and F1" but not under which protocol. The same model scores several times higher or
# lower when the protocol changes.
#
# **Goals**
# - split recommendation data leave-one-out and search data by query, and know why;
# - implement NDCG yourself and see how HR, NDCG, MRR, precision, recall and F1 relate;
# - compare full ranking with sampled ranking;
# - reproduce the "leaky popularity" of a published baseline.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from soutui.data.sequences import SequenceData, leave_one_out, split_queries
from soutui.data.store import open_store
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.registry import model_class

import checks
import labkit

DATA = labkit.setup()
labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
store = open_store(read_only=True)
data = SequenceData.from_events(store.read("amazon-beauty", "events"), store.read("amazon-beauty", "items"))
store.close()
split = leave_one_out(data)
print(f"train interactions {split.train.n_interactions:,} | valid users {len(split.valid):,} | test users {len(split.test):,}")

# %% [markdown] tags=["zh"]
# ## 留一法
#
# 每个用户按时间排序：最后一个商品做测试，倒数第二个做验证，其余用于训练。测试时，验证商品可以出现在
# 输入历史里，但永远不作为训练标签。这是 SASRec、S3-Rec 等论文共用的协议，所以我们的数字能和它们比。

# %% [markdown] tags=["en"]
# ## Leave-one-out
#
# Each user's items are in time order: the last is the test target, the second last the validation target,
# the rest is training data. At test time the validation item may be part of the input history but is never
# a training label. SASRec, S3-Rec and others use this protocol, so our figures compare with theirs.

# %%
u = 0
seq = data.sequences[u]
print("full sequence :", seq)
print("train part    :", split.train.sequences[u])
print("valid target  :", split.valid.targets[0], "| test target:", split.test.targets[0],
      "| test history :", split.test.histories[0])

# %% [markdown] tags=["zh"]
# ## 搜索按查询切分
#
# Home Depot 的标注是 (查询, 商品, 相关度)。如果按行随机切，同一个查询会同时出现在训练集和测试集，
# 模型就是在"背答案"。按查询切分保证每个查询只在一边。

# %% [markdown] tags=["en"]
# ## Search splits by query
#
# Home Depot's labels are (query, product, relevance). Split rows at random and the same query lands in
# both train and test: the model is tested on questions it has seen. Splitting by query keeps each query
# on one side.

# %%
hd = pd.read_csv(DATA / "homedepot-search" / "train.csv", encoding="utf-8")
rng = np.random.default_rng(0)
test_rows = rng.random(len(hd)) < 0.2
seen = set(hd.loc[~test_rows, "search_term"])
by_row = np.mean([q in seen for q in hd.loc[test_rows, "search_term"].unique()])
train_q, test_q = split_queries(hd["search_term"].to_numpy(), test_frac=0.2, seed=0)
print(f"random rows: {by_row:.0%} of test queries also appear in train")
print(f"by query   : {len(train_q & test_q)} shared queries ({len(train_q):,} train / {len(test_q):,} test)")

# %% [markdown] tags=["zh"]
# ## 名次与指标
#
# 留一法下每个用户只有一个目标商品，所以一切指标都由目标的**名次**决定（从 0 开始，并列时取最差名次）。
# 先用引擎的热门模型，只在训练部分上拟合，对全部商品排序，得到每个测试用户的名次。

# %% [markdown] tags=["en"]
# ## Ranks and metrics
#
# With one target per user, every metric is a function of the target's **rank** (0-based, ties counted
# pessimistically). Fit the engine's popularity model on the training part only and rank all items for
# every test user.

# %%
popularity = model_class("popularity")().fit(split.train)
ranks, _ = target_ranks(popularity, split.test)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(ranks, bins=60, color="#4a7ab0")
ax.set(title="rank of the test item under popularity (0 = top)", xlabel="rank", ylabel="users")
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh", "ex:3.1"]
# ### 练习 3.1：实现 NDCG@k
#
# 写 `ndcg(ranks, k)`：输入 0 起始的名次数组，返回平均 NDCG@k。只有一个相关商品时，
# 名次 r < k 的得分是 1/log2(r+2)，否则为 0。

# %% [markdown] tags=["en", "ex:3.1"]
# ### Exercise 3.1: implement NDCG@k
#
# Write `ndcg(ranks, k)`: given 0-based ranks, return the mean NDCG@k. With one relevant item, a rank
# r < k scores 1/log2(r+2), anything else scores 0.

# %% tags=["exercise", "ex:3.1"]
def ndcg(ranks, k):
    return 0.0  # your code here


# %%
checks.lab03_ndcg(ndcg, 10)
print("popularity NDCG@10:", round(ndcg(ranks, 10), 6))

# %% [markdown] tags=["zh"]
# 只有一个目标时：召回率 = HR，精确率 = HR/k，F1 = HR·2/(k+1)，MAP = MRR。所以种子里的
# "准确率、召回率、F1"在这个协议下其实只有一个自由度；NDCG 和 MRR 还看名次有多靠前。

# %% [markdown] tags=["en"]
# With a single target: recall = HR, precision = HR/k, F1 = HR·2/(k+1), MAP = MRR. The seed's
# "precision, recall, F1" therefore carry one degree of freedom under this protocol; NDCG and MRR also
# reward a higher place.

# %%
pd.DataFrame([ranking_metrics(ranks, (5, 10, 20))]).T.rename(columns={0: "popularity (test)"})

# %% [markdown] tags=["zh", "ex:3.2"]
# ### 练习 3.2：热度泄漏
#
# S3-Rec 论文表里的 PopRec 在这份数据上 HR@10 = 0.0152，而引擎的热门模型只有约 0.0106。
# 差别在于热度怎么数：如果把**全部**交互（包括验证和测试商品）都计入，模型就偷看了答案。
# 用 `np.bincount` 只在训练部分 `split.train.sequences` 上数出每个商品的次数，记为 `honest`
# （长度为商品数 `data.n_items`）。

# %% [markdown] tags=["en", "ex:3.2"]
# ### Exercise 3.2: the leaky popularity
#
# The S3-Rec paper's PopRec reports HR@10 = 0.0152 on this data; the engine's popularity gets about 0.0106.
# The difference is how popularity is counted: count **every** interaction (validation and test items
# included) and the model has seen the answers. With `np.bincount`, count each item over the training part
# `split.train.sequences` only, as `honest` (length `data.n_items`).

# %% tags=["exercise", "ex:3.2"]
honest = None  # your code here

# %%
leaky = np.bincount(np.concatenate(data.sequences), minlength=data.n_items)
right = checks.lab03_honest_counts(honest, np.bincount(np.concatenate(split.train.sequences), minlength=data.n_items), leaky)


def hr10_of_counts(counts):
    c = np.asarray(counts, dtype=np.float64)
    t = c[split.test.targets]
    ranks = (c[None, :] > t[:, None]).sum(1) + (c[None, :] == t[:, None]).sum(1) - 1
    return float((ranks < 10).mean())


if right:
    print(f"HR@10 honest counts {hr10_of_counts(honest):.4f} | leaky counts {hr10_of_counts(leaky):.4f} | published PopRec 0.0152")

# %% [markdown] tags=["zh"]
# ## 全量排序与采样排序
#
# 不少论文只把目标和 100 个随机负样本排序（采样排序）。这样数字会大很多，模型之间的差距也被压缩（Krichene 和 Rendle 在 KDD 2020 上指出，模型的先后顺序甚至可能颠倒）。
# 下面用热门和 item-kNN 两个模型，在同一批用户上对比两种协议。快速模式只取一部分用户。

# %% [markdown] tags=["en"]
# ## Full ranking against sampled ranking
#
# Many papers rank the target against only 100 random negatives (sampled ranking). The figures grow a lot
# and the gaps between models shrink (Krichene and Rendle, KDD 2020, show that even their order can flip). Compare both protocols for popularity and
# item-kNN on the same users; the fast mode takes a subset of users.

# %%
n_users = labkit.budget(1500, len(split.test))
users = np.random.default_rng(1).permutation(len(split.test))[:n_users]
sub = split.test.take(users)
models = {"popularity": popularity, "itemknn": model_class("itemknn")().fit(split.train)}
negatives = np.random.default_rng(2).integers(0, data.n_items, size=(len(sub), 100))
negatives = np.where(negatives == sub.targets[:, None], (negatives + 1) % data.n_items, negatives)
candidates = np.concatenate([sub.targets[:, None], negatives], axis=1)  # column 0 = the target
full_hr, cand_scores = {}, {}
for name, model in models.items():
    full_hr[name] = ranking_metrics(target_ranks(model, sub)[0], (10,))["HR@10"]
    scores = np.concatenate([model.score(sub.histories[i:i + 256]) for i in range(0, len(sub), 256)])
    cand_scores[name] = np.take_along_axis(scores, candidates, axis=1)  # (N, 101)
print("full-ranking HR@10:", full_hr)

# %% [markdown] tags=["zh", "ex:3.3"]
# ### 练习 3.3：采样 HR@10
#
# `cand_scores[name]` 的形状是 (用户数, 101)，第 0 列是目标商品的分数，其余是 100 个负样本。
# 写 `sampled_hr10(s)`：目标在这 101 个候选里的名次（并列算在目标前面）小于 10 的用户比例。

# %% [markdown] tags=["en", "ex:3.3"]
# ### Exercise 3.3: sampled HR@10
#
# `cand_scores[name]` has shape (users, 101): column 0 is the target's score, the rest are 100 negatives.
# Write `sampled_hr10(s)`: the share of users whose target ranks below 10 among these 101 candidates
# (ties placed above the target).

# %% tags=["exercise", "ex:3.3"]
def sampled_hr10(s):
    return 0.0  # your code here


# %%
checks.lab03_sampled_hr(sampled_hr10, cand_scores["itemknn"])
sampled = {name: sampled_hr10(s) for name, s in cand_scores.items()}
fig, ax = plt.subplots(figsize=(6, 3))
x = np.arange(len(models))
ax.bar(x - 0.2, [full_hr[m] for m in models], 0.4, label="full ranking")
ax.bar(x + 0.2, [sampled[m] for m in models], 0.4, label="100 sampled negatives")
ax.set_xticks(x, list(models))
ax.set(title=f"HR@10 on {len(sub):,} test users", ylabel="HR@10")
ax.legend()
plt.tight_layout()
plt.show()
print({m: f"full {full_hr[m]:.4f} sampled {sampled[m]:.4f} (x{sampled[m] / max(full_hr[m], 1e-9):.1f})" for m in models})

# %% [markdown] tags=["zh"]
# ## 小结
#
# 报告一个数之前先写清协议：怎么切分、对多少候选排序、历史商品是否排除、并列怎么算、热度在哪部分数据上数。
# soutui 的每个评估结果都带着这段描述（`protocol.description`），课程后面的数字也都照此报告。

# %% [markdown] tags=["en"]
# ## Summary
#
# State the protocol before any figure: the split, how many candidates are ranked, whether history items are
# excluded, how ties count, and which data popularity was counted on. Every soutui evaluation carries that
# statement (`protocol.description`), and the rest of the course reports its figures the same way.
