# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 2：数据处理
#
# 对应种子文档 **2.3 数据处理** 与 **3.2.1 数据预处理**：收集、清洗、处理缺失值、去重、特征提取。
# 种子只列了步骤，这里在真实日志上逐一动手，并加上种子没写的一步：**在入口处保护隐私**。
#
# **目标**
# - 读原始日志，量一量缺失值和长尾；
# - 看导入器如何把坏行放进隔离区（quarantine）而不是悄悄丢掉；
# - 亲手去重、补缺失的时间戳；
# - 看用户 ID 如何在写入存储之前就被假名化。

# %% [markdown] tags=["en"]
# # Lab 2: Data processing
#
# Seed sections **2.3 (data processing)** and **3.2.1 (preprocessing)**: collection, cleaning, missing
# values, deduplication, features. The seed lists the steps; here we do each on real logs and add the step
# it leaves out: **privacy at the door**.
#
# **Goals**
# - read the raw log and measure its missing values and its long tail;
# - see how the importer quarantines bad rows instead of silently dropping them;
# - deduplicate and fill missing timestamps yourself;
# - see user ids pseudonymised before anything reaches the store.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import checks
import labkit

DATA = labkit.setup()
raw = pd.read_csv(DATA / "amazon-beauty" / "beauty_interactions.tsv", sep="\t")
raw.head()

# %% [markdown] tags=["zh"]
# ## 缺失值与长尾
#
# 每行是一条评论（当作一次购买）。时间戳来自第二份公开数据的匹配，少数行没有。
# 商品的热度是典型的长尾：少数商品占了大部分交互，这决定了热门基线为什么又强又没用。

# %% [markdown] tags=["en"]
# ## Missing values and the long tail
#
# Each row is a review (taken as a purchase). Timestamps were joined from a second public copy, and a few
# rows have none. Item popularity has the classic long tail: a few items take most interactions, which is
# why the popularity baseline is both hard to beat on some metrics and useless for discovery.

# %%
missing = raw["timestamp"].isna()
print(f"rows: {len(raw):,}  missing timestamps: {missing.sum():,} ({missing.mean():.2%})")
counts = raw["item_id"].value_counts().to_numpy()
lengths = raw.groupby("user_id").size().to_numpy()
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
a.loglog(np.arange(1, len(counts) + 1), counts)
a.set(title="item popularity (rank vs count)", xlabel="item rank", ylabel="interactions")
b.hist(lengths, bins=np.arange(5, 60), color="#4a7ab0")
b.set(title="history length per user", xlabel="interactions")
plt.tight_layout()
plt.show()
top = counts[: len(counts) // 10].sum() / counts.sum()
print(f"the top 10% of items hold {top:.0%} of the interactions")

# %% [markdown] tags=["zh", "ex:2.1"]
# ### 练习 2.1：补缺失的时间戳
#
# 按导入器的做法：缺失的时间戳用**同一商品**已知时间戳的中位数补上（`groupby` + `transform`）。
# 对 `raw` 得到补全后的时间戳序列 `filled`（长度不变，已知值不动）。

# %% [markdown] tags=["en", "ex:2.1"]
# ### Exercise 2.1: fill missing timestamps
#
# As the importer does, fill a missing timestamp with the median of the **same item's** known timestamps
# (`groupby` + `transform`). Produce `filled`, the completed timestamp Series of `raw` (same length, known
# values unchanged).

# %% tags=["exercise", "ex:2.1"]
filled = None  # your code here

# %%
checks.lab02_fill_ts(filled, raw)

# %% [markdown] tags=["zh"]
# ## 导入与隔离区
#
# 真实的店铺数据会有重复行、缺商品、缺用户和写坏的时间。我们从真实日志里取 300 行，故意弄脏，
# 再用通用导入器 `soutui data import generic` 导入。注意其中一个用户 ID 是邮箱。

# %% [markdown] tags=["en"]
# ## Import and the quarantine
#
# Real shop data has duplicate rows, missing items, missing users and broken times. We take 300 real rows,
# dirty them on purpose and import them with the generic importer `soutui data import generic`.
# Note that one user id is an e-mail address.

# %%
shop = raw.head(300)[["reviewer_id", "asin", "timestamp"]].set_axis(["customer", "sku", "time"], axis=1)
dirty = pd.concat([shop, shop.head(20)], ignore_index=True).astype(object)
dirty.loc[len(dirty)] = ["jane.doe@example.com", "B004756YJA", 1318896000]
dirty.loc[len(dirty)] = ["A1YJEY40YUW4SE", None, 1318896000]
dirty.loc[len(dirty)] = ["A1YJEY40YUW4SE", "B004756YJA", "yesterday"]
dirty.loc[len(dirty)] = [None, "B004756YJA", 1318896000]
path = Path(os.environ.get("SOUTUI_HOME", ".soutui")) / "dirty_shop.csv"
path.parent.mkdir(parents=True, exist_ok=True)
dirty.to_csv(path, index=False)
os.environ.setdefault("SOUTUI_PSEUDONYM_KEY", "course-demo-key: keep a real one secret")
imported = labkit.soutui("data", "import", "generic", "--events", str(path), "--name", "dirty-shop",
                         "--map", "user_id=customer,item_id=sku,ts=time", "--event-type", "purchase", "--replace")
print("kept:", imported["rows_kept"], "\nquarantined:", imported["quarantined"], "\nprivacy:", imported["privacy"])

# %% [markdown] tags=["zh"]
# 隔离区里的每一行都带着原因，可以导出来修好再导入（`soutui data quarantine`）。被隔离的行里，
# 用户 ID 也已经是假名（`u_...`）：原始邮箱在写盘之前就没了。这就是"入口处的隐私"。

# %% [markdown] tags=["en"]
# Every quarantined row carries its reason and can be exported, fixed and re-imported
# (`soutui data quarantine`). Even in the quarantine the user ids are already pseudonyms (`u_...`): the raw
# e-mail is gone before anything is written. That is privacy at the door.

# %%
from soutui.data.store import open_store

store = open_store(read_only=True)
stored = store.read("dirty-shop", "events")
store.close()
print(stored[["user_id", "item_id", "ts"]].head(3))
assert not stored["user_id"].astype(str).str.contains("@").any()

# %% [markdown] tags=["zh", "ex:2.2"]
# ### 练习 2.2：自己去重
#
# 导入器把完全相同的 (用户, 商品, 时间) 视为重复。对 `dirty` 按列 `keys` 去重，
# 每组重复只保留**第一行**，结果记为 `deduped`。然后和导入报告里的 `duplicate_row` 对一对。

# %% [markdown] tags=["en", "ex:2.2"]
# ### Exercise 2.2: deduplicate yourself
#
# The importer treats identical (user, item, time) rows as duplicates. Deduplicate `dirty` on the columns
# `keys`, keeping the **first** row of each group, as `deduped`. Then compare with `duplicate_row` in the
# import report.

# %% tags=["exercise", "ex:2.2"]
keys = ["customer", "sku", "time"]
deduped = None  # your code here

# %%
if checks.lab02_dedupe(deduped, dirty, keys):
    print("rows removed:", len(dirty) - len(deduped), "| importer's duplicate_row:", imported["quarantined"]["duplicate_row"])

# %% [markdown] tags=["zh"]
# ## 特征
#
# 推荐模型的输入是按时间排好的商品序列；商品内容（标题、类目、品牌）作为辅助特征。导入后的
# `soutui data stats` 给出这些数。真实 Beauty 数据的导入报告里，`fixed` 就是练习 2.1 补上的时间戳。

# %% [markdown] tags=["en"]
# ## Features
#
# A recommender reads time-ordered item sequences; item content (titles, categories, brands) is side
# information. `soutui data stats` reports them after an import. In the real Beauty import report, `fixed`
# counts the timestamps that exercise 2.1 filled.

# %%
beauty = labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
print("fixed:", beauty["fixed"])
stats = labkit.soutui("data", "stats", "amazon-beauty")
print({k: stats[k] for k in ("items", "events", "users", "first_ts", "last_ts")})

# %% [markdown] tags=["zh"]
# ## 小结
#
# 清洗不是"删掉看着不对的行"：每一行去了哪里都要可追溯（隔离区），每一处修补都要计数（`fixed`），
# 个人信息在入口就处理掉。下一个实验把这些序列切成训练、验证和测试集。

# %% [markdown] tags=["en"]
# ## Summary
#
# Cleaning is not "delete the rows that look wrong": every dropped row stays traceable (the quarantine),
# every repair is counted (`fixed`), and personal data is handled at the door. The next lab splits these
# sequences into training, validation and test sets.
