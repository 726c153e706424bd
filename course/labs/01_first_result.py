# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 1：环境搭建与第一个结果
#
# 对应种子文档 **5.1 开发环境搭建**。我们先跑出一个能看的结果，再回头讲原理（fast.ai 的路子）。
#
# **目标**
# - 装好 soutui，导入真实的 Amazon Beauty 数据（22,363 个用户、12,101 个商品）；
# - 用一条命令在全量排序协议下评估一个基线；
# - 给一个真实用户出推荐，再做一次商品搜索。

# %% [markdown] tags=["en"]
# # Lab 1: Setup and a first result
#
# Seed section **5.1 (development environment)**. We get a working result first and explain it
# afterwards (the fast.ai way).
#
# **Goals**
# - install soutui and import the real Amazon Beauty data (22,363 users, 12,101 items);
# - evaluate a baseline under full ranking with one command;
# - recommend for a real user, then run a product search.

# %% [markdown] tags=["zh"]
# ## 安装
#
# 在仓库根目录运行 `make demo` 或 `pip install -e '.[train,course]'`。课程只用 soutui 的公开接口：
# 命令行 `soutui ... --json` 和 `soutui.*` 下的公开模块。下面这格确定运行模式：
# CI 用快速模式（`SOUTUI_COURSE_FAST=1`，预算小、代码路径相同，数据存到临时目录）。

# %% [markdown] tags=["en"]
# ## Install
#
# From the repository root run `make demo` or `pip install -e '.[train,course]'`. The course uses soutui's
# public surface only: the command line `soutui ... --json` and the public `soutui.*` modules. The next
# cell picks the mode: CI runs the fast mode (`SOUTUI_COURSE_FAST=1`: small budgets, same code path,
# a throw-away store).

# %%
import html
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))  # course/ holds labkit and checks
import matplotlib.pyplot as plt
import numpy as np

import checks
import labkit

DATA = labkit.setup()
print("fast mode:", labkit.FAST, "| data:", DATA)

# %% [markdown] tags=["zh"]
# ## 导入数据
#
# `soutui data import` 读入原始文件，清洗、隔离坏行，再写进本地的 DuckDB 存储。导入报告告诉你读了多少行、
# 留下多少行、修补了什么。

# %% [markdown] tags=["en"]
# ## Import the data
#
# `soutui data import` reads the raw files, cleans them, quarantines bad rows and writes the local DuckDB
# store. Its report says how many rows were read and kept, and what was repaired.

# %%
report = labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
print({k: report[k] for k in ("rows_read", "rows_kept", "fixed", "quarantined_total")})

# %% [markdown] tags=["zh"]
# ## 第一个结果：全量排序下的热门基线
#
# `soutui evaluate` 采用留一法（最后一个商品做测试，倒数第二个做验证），对**全部** 12,101 个商品排序，
# 并且并列时取最悲观的名次。先看最简单的模型：按热度推荐。

# %% [markdown] tags=["en"]
# ## A first result: the popularity baseline under full ranking
#
# `soutui evaluate` uses leave-one-out (last item = test, second last = validation), ranks **all** 12,101
# items and breaks ties pessimistically. Start with the simplest model: recommend what is popular.

# %%
result = labkit.soutui("evaluate", "--dataset", "amazon-beauty", "--model", "popularity")
print(result["protocol"]["description"])
test = result["metrics"]["test"]
ks = [5, 10, 20]
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar([f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks],
       [test[f"HR@{k}"] for k in ks] + [test[f"NDCG@{k}"] for k in ks], color="#4a7ab0")
ax.set_title("popularity, Amazon Beauty test (full ranking)")
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh", "ex:1.1"]
# ### 练习 1.1：数据有多稀疏？
#
# 用 `result["dataset_stats"]` 里的用户数、商品数和交互数，算出交互矩阵的**密度**
# （有交互的 (用户, 商品) 格子占全部格子的比例），赋给 `density`。

# %% [markdown] tags=["en", "ex:1.1"]
# ### Exercise 1.1: how sparse is the data?
#
# From the users, items and interactions in `result["dataset_stats"]`, compute the **density** of the
# interaction matrix (the share of (user, item) cells that hold an interaction) and assign it to `density`.

# %% tags=["exercise", "ex:1.1"]
stats = result["dataset_stats"]
density = None  # your code here

# %%
checks.lab01_density(density, stats)

# %% [markdown] tags=["zh"]
# ## 给一个真实用户推荐
#
# 评估之外，模型的日常工作是给某段历史打分。soutui 的模型都遵守同一个契约：`fit(train)`，
# `score(histories)` 返回对所有商品的分数。这里用物品协同过滤（item-kNN）。

# %% [markdown] tags=["en"]
# ## Recommend for a real user
#
# Beyond evaluation, a model's daily job is to score a history. Every soutui model follows one contract:
# `fit(train)`, and `score(histories)` returns a score for every item. Here we use item-kNN.

# %%
from soutui.data.sequences import SequenceData
from soutui.data.store import open_store
from soutui.models.registry import model_class

store = open_store(read_only=True)
events, items = store.read("amazon-beauty", "events"), store.read("amazon-beauty", "items")
store.close()
data = SequenceData.from_events(events, items)
model = model_class("itemknn")().fit(data)
raw_titles = items.set_index("item_id")["title"].reindex(data.item_ids).fillna("?")
titles = raw_titles.map(html.unescape).to_numpy()  # the source keeps HTML entities such as &#9733;
user = 7
history = np.asarray(data.sequences[user])
print("history:", *[f"  - {titles[i][:70]}" for i in history[-5:]], sep="\n")
scores = model.score([history])[0]

# %% [markdown] tags=["zh", "ex:1.2"]
# ### 练习 1.2：只推荐没买过的
#
# `scores` 是该用户对每个商品的分数。找出**不在**历史 `history` 里、分数最高的 10 个商品下标，
# 按分数从高到低排成 `fresh`。（提示：先把历史商品的分数设为 `-np.inf`。）

# %% [markdown] tags=["en", "ex:1.2"]
# ### Exercise 1.2: recommend only what is new
#
# `scores` holds this user's score for every item. Find the 10 best-scored item indices that are **not**
# in `history`, highest first, as `fresh`. (Hint: set the history's scores to `-np.inf` first.)

# %% tags=["exercise", "ex:1.2"]
fresh = None  # your code here

# %%
if checks.lab01_fresh_top10(fresh, history, scores):
    print(*[f"  {n + 1}. {titles[i][:70]}" for n, i in enumerate(fresh)], sep="\n")

# %% [markdown] tags=["zh"]
# ## 一次搜索
#
# `soutui index build` 为商品标题建关键词索引（BM25）和语义索引，`soutui search` 用混合融合检索。
# 语义向量会缓存，第一次在一台机器上编码全部商品需要几分钟。

# %% [markdown] tags=["en"]
# ## A search
#
# `soutui index build` builds a keyword index (BM25) and a semantic index over the titles; `soutui search`
# fuses both (hybrid). Embeddings are cached: the first run on a machine spends minutes encoding the catalogue.

# %%
labkit.soutui("index", "build", "--dataset", "amazon-beauty", "--no-ltr", "--encoder", "minilm")
found = labkit.soutui("search", "moisturizer for dry skin", "-k", "5", "--method", "hybrid")
for hit in found["hits"]:
    print(f"{hit['score']:.4f}  {hit['title'][:70]}  ({hit['reason']})")

# %% [markdown] tags=["zh"]
# ## 小结
#
# 几条命令就有了一个可衡量的基线、一份推荐和一次搜索。热门基线的 HR@10 只有约 1%：后面的实验会解释
# 这个数为什么和论文里的 PopRec（0.0152）不一样（实验 3），以及更好的模型能走多远。

# %% [markdown] tags=["en"]
# ## Summary
#
# A few commands gave a measured baseline, a recommendation and a search. Popularity reaches an HR@10 of
# about 1%: lab 3 explains why that differs from the published PopRec (0.0152), and later labs show how
# far better models go.
