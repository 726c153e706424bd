# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 5：大模型
#
# 对应种子文档 **2.1 大模型的结构**、**3.1 模型设计** 和 **3.3 训练**。soutui 的主力推荐模型是一个读内容的
# SASRec：用户历史按时间排成序列，Transformer 的因果自注意力读它，再对全部商品做 softmax 预测下一个。
#
# **目标**
# - 亲手写一次因果自注意力，看清“不许看未来”是怎样做到的；
# - 亲手写全量 softmax 交叉熵，理解为什么它比负采样更贴近全量排序评估；
# - 用同一个训练流程做消融：只用 ID，加标题，加属性，加时间，加共现头，看每一项带来了什么。

# %% [markdown] tags=["en"]
# # Lab 5: The big model
#
# Seed sections **2.1 (the large model's structure)**, **3.1 (model design)** and **3.3 (training)**. soutui's
# main recommender is a content-aware SASRec: a user's history is a time-ordered sequence, a Transformer's
# causal self-attention reads it, and a softmax over every item predicts the next one.
#
# **Goals**
# - write causal self-attention once by hand and see how "no peeking at the future" is enforced;
# - write the full-softmax cross-entropy and see why it matches full-ranking evaluation better than sampled
#   negatives;
# - run an ablation through one training path: IDs only, + titles, + attributes, + time, + the
#   co-occurrence head, and see what each adds.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from soutui.data.sequences import SequenceData, leave_one_out
from soutui.evaluation.protocol import ranking_metrics, target_ranks
from soutui.models.registry import model_class
from soutui.training.pipeline import prepare
from soutui.training.trainer import LoopTrainer

import checks
import labkit

DATA = labkit.setup()
torch.set_num_threads(1)
labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
prep = prepare("amazon-beauty", progress=False)  # sequences + item content (cached MiniLM title vectors)
data, content = prep.data, prep.content
print(f"{data.n_users:,} users, {data.n_items:,} items; title vectors {content.text.shape}, "
      f"{sum(map(len, content.attributes)):,} item attributes")

# %% [markdown] tags=["zh"]
# ## 因果自注意力
#
# 序列第 t 个位置的输出只能用第 1..t 个商品：训练时模型同时预测每个位置的下一个商品，如果位置 t 能看到
# t+1，就等于偷看了答案。做法是在注意力分数 QKᵀ/√d 上，把 j > t 的位置设成 −∞，再按行 softmax。

# %% [markdown] tags=["en"]
# ## Causal self-attention
#
# The output at position t may only use items 1..t: training predicts the next item at every position at
# once, and if position t could see t+1 it would read the answer. So the attention scores QKᵀ/√d are
# set to −∞ wherever j > t before the row-wise softmax.

# %% [markdown] tags=["zh", "ex:5.1"]
# ### 练习 5.1：因果注意力
#
# 写 `causal_attention(q, k, v)`：输入三个形状 (T, d) 的数组，返回 (T, d)：
# softmax(q kᵀ / √d，只允许 j ≤ t) 乘以 v。

# %% [markdown] tags=["en", "ex:5.1"]
# ### Exercise 5.1: causal attention
#
# Write `causal_attention(q, k, v)`: given three (T, d) arrays, return (T, d): softmax(q kᵀ / √d, only
# j ≤ t allowed) times v.

# %% tags=["exercise", "ex:5.1"]
def causal_attention(q, k, v):
    scores = q @ k.T / np.sqrt(q.shape[1])
    # your code here: hide the future
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    return weights @ v


# %%
if checks.lab05_attention(causal_attention):
    x = np.random.default_rng(0).normal(size=(6, 4))
    w = causal_attention(x, x, np.eye(6, 4))
    print("position 0 attends only to itself:", np.allclose(w[0], np.eye(6, 4)[0]))

# %% [markdown] tags=["zh"]
# ## 全量 softmax
#
# 模型最后输出每个位置对全部 12,101 个商品的分数，损失是真实下一个商品的交叉熵：
# −log(exp(s_y) / Σᵢ exp(sᵢ))。负采样只和少数随机商品比，评估却要在全部商品里排第几，
# 全量 softmax 训练的目标和评估一致。分母要用 log-sum-exp 的稳定写法，否则分数一大就溢出。

# %% [markdown] tags=["en"]
# ## Full softmax
#
# The model's last layer scores all 12,101 items at each position, and the loss is the cross-entropy of the
# true next item: −log(exp(s_y) / Σᵢ exp(sᵢ)). Sampled negatives compare against a few random
# items while the evaluation asks for a rank among all items; training with the full softmax asks the same
# question as the evaluation. The denominator needs the stable log-sum-exp form, or large scores overflow.

# %% [markdown] tags=["zh", "ex:5.2"]
# ### 练习 5.2：全量 softmax 交叉熵
#
# 写 `full_softmax_loss(logits, targets)`：`logits` 形状 (B, 商品数)，`targets` 形状 (B,) 是正确商品的下标，
# 返回平均交叉熵（一个数）。分数可能很大（比如 1000），要数值稳定。

# %% [markdown] tags=["en", "ex:5.2"]
# ### Exercise 5.2: full-softmax cross-entropy
#
# Write `full_softmax_loss(logits, targets)`: `logits` is (B, n_items), `targets` (B,) holds the true items'
# indices; return the mean cross-entropy (one number). Scores can be large (say 1000): keep it stable.

# %% tags=["exercise", "ex:5.2"]
def full_softmax_loss(logits, targets):
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # your code here
    return float(-np.log(probs[np.arange(len(targets)), targets]).sum())


# %%
if checks.lab05_softmax_loss(full_softmax_loss):
    print(f"a model that knows nothing (all scores equal) pays log({data.n_items}) = "
          f"{full_softmax_loss(np.zeros((1, data.n_items)), np.array([0])):.2f} per prediction")

# %% [markdown] tags=["zh"]
# ## 消融：每一项带来了什么
#
# 同一个训练流程，每次多开一项：只用商品 ID；加标题（MiniLM 句向量）；加属性；加时间（间隔嵌入和相对时间
# 注意力偏置）；加共现头（item-kNN 的相似度按验证集选权重加到分数上）。
#
# **快速模式**只取 6,000 个用户、每个变体训练 1 轮（d_model 32、1 层、序列长 20），每个十几秒，结果主要是噪声，
# 顺序可能和完整结果不同，**不是发表的数字**。完整模式用全部用户、默认结构，每个变体 6 分钟 CPU 预算。

# %% [markdown] tags=["en"]
# ## Ablation: what each part adds
#
# One training path, one more part switched on each time: item ids only; + titles (MiniLM sentence vectors);
# + attributes; + time (interval embedding and relative-time attention bias); + the co-occurrence head
# (item-kNN similarity added to the scores with a weight chosen on validation).
#
# The **fast mode** takes 6,000 users and trains each variant 1 epoch (d_model 32, 1 layer, sequences of 20),
# about ten seconds each: its results are mostly noise, may order the variants differently, and **are not the
# published figures**. The full mode uses every user and the default architecture with a 6 CPU-minute budget
# per variant.

# %%
users = np.random.default_rng(0).permutation(data.n_users)[: labkit.budget(6000, data.n_users)]
sample = SequenceData(data.item_ids, data.user_ids[users], [data.sequences[u] for u in users],
                      [data.timestamps[u] for u in users])
split = leave_one_out(sample)
base = labkit.budget(dict(epochs=1, d_model=32, n_layers=1, max_len=20),
                     dict(epochs=200, max_cpu_minutes=6, patience=8))
off = dict(use_text=False, use_attrs=False, use_timestamps=False, use_time=False, cooc_neighbors=0)
variants = {
    "id only": off,
    "+ titles": {**off, "use_text": True},
    "+ attributes": {**off, "use_text": True, "use_attrs": True},
    "+ time": {**off, "use_text": True, "use_attrs": True, "use_timestamps": True, "use_time": True},
    "+ co-occurrence head": {**off, "use_text": True, "use_attrs": True, "use_timestamps": True, "use_time": True,
                             "cooc_neighbors": 100},
}
results = {}
for name, switches in variants.items():
    t0 = time.perf_counter()
    model = model_class("sasrec")(threads=1, seed=0, **base, **switches).use_trainer(LoopTrainer(progress=False))
    model.fit(split.train, split.valid, content=content)
    results[name] = ranking_metrics(target_ranks(model, split.test)[0], (10,))
    results[name]["seconds"] = time.perf_counter() - t0
    print(f"{name:22s} test NDCG@10 {results[name]['NDCG@10']:.4f}  HR@10 {results[name]['HR@10']:.4f}  "
          f"({results[name]['seconds']:.0f} s)")
fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(results)[::-1], [r["NDCG@10"] for r in results.values()][::-1], color="#4a7ab0")
ax.set(title=f"test NDCG@10, {len(split.test):,} users ({'fast' if labkit.FAST else 'full'} mode)", xlabel="NDCG@10")
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh"]
# ## 小结
#
# SASRec 用因果自注意力读历史，用全量 softmax 训练，和全量排序评估问的是同一个问题。docs/sasrec.md 的消融
# （完整数据、每个变体 6 分钟 CPU 或 10～12 分钟墙钟预算，测试 NDCG@10）：只用 ID 0.0306，加标题 0.0350，
# 加属性 0.0351，加时间 0.0364，再加看过/商品偏置和 ID dropout 0.0389；完整模型训练 20 分钟并加上共现头达到
# 0.0575（HR@10 0.0947），只用 Transformer 是 0.0526。标题带来的提升最大，共现头在这份小数据上又加了一截。
# 快速模式的数字只说明流程能跑，不能拿来比较。

# %% [markdown] tags=["en"]
# ## Summary
#
# SASRec reads the history with causal self-attention and trains with the full softmax, asking the same
# question as full-ranking evaluation. The ablation of docs/sasrec.md (all data, each variant a 6 CPU-minute or
# 10-12 wall-minute budget, test NDCG@10): ids only 0.0306, + titles 0.0350, + attributes 0.0351, + time
# 0.0364, + seen/item bias and id dropout 0.0389; the full model trained for 20 minutes with the
# co-occurrence head reaches 0.0575 (HR@10 0.0947), the transformer alone 0.0526. Titles give the largest
# step, and the co-occurrence head adds another on this small dataset. The fast-mode figures only show that
# the path runs; do not compare them.
