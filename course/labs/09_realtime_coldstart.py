# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 9：实时与冷启动
#
# 对应种子文档 **6.1.3 实时推荐** 和 **7.3 冷启动**。线上系统每秒都在收到新行为、新用户和新商品，
# 而模型是昨天训练的。这个实验启动一个真实的 `soutui serve`，从外面给它发事件，看推荐怎么跟着变。
#
# **目标**
# - 把一个小店的数据打成服务包，在本机空闲端口上启动 `soutui serve`；
# - 通过 `POST /v1/events` 发送实时行为，观察同一个用户的 `/v1/recommend` 立刻改变；
# - 新用户没有历史：看服务退回到“热门趋势”，以及几次点击后如何变成个性化推荐；
# - 新商品没有任何行为：用文本搜索找到它，用标题的语义向量找到和它相似的商品。

# %% [markdown] tags=["en"]
# # Lab 9: Real time and cold start
#
# Seed sections **6.1.3 (real-time recommendation)** and **7.3 (cold start)**. A live system receives new
# behaviour, new users and new products every second, while the model was trained yesterday. This lab starts a
# real `soutui serve`, sends it events from outside and watches the recommendations follow.
#
# **Goals**
# - package a small shop's data as a bundle and start `soutui serve` on a free local port;
# - send live behaviour through `POST /v1/events` and see the same user's `/v1/recommend` change at once;
# - a new user has no history: see the service fall back to trending, and turn personal after a few clicks;
# - a new product has no behaviour at all: find it by text search, and find products like it through the
#   semantic vectors of titles.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import html
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from soutui.features.embeddings import embed_texts
from soutui.serving.schemas import EventBatch

import checks
import labkit

DATA = labkit.setup()
t_lab = time.perf_counter()

# %% [markdown] tags=["zh"]
# ## 一个小店：Beauty 的热门商品，外加 12 个新品
#
# 取 Amazon Beauty 里被评论最多的商品（快速模式 800 个）和买过其中至少 3 个的用户（快速模式抽 1,500 个），
# 再从冷门商品里挑 12 个当作“刚上架的新品”：它们在商品目录里、有标题，但**没有任何行为**。
# 用通用导入器导入，`soutui bundle build` 评估热门和 item-kNN、建搜索索引（BM25 + 标题的语义向量）并写出服务包。

# %% [markdown] tags=["en"]
# ## A small shop: Beauty's best sellers plus 12 new products
#
# Take the most reviewed Amazon Beauty products (800 in fast mode) and users who bought at least 3 of them
# (a sample of 1,500 in fast mode), then pick 12 rarely reviewed products as "just listed": they are in the
# catalogue, with titles, but have **no behaviour at all**. The generic importer loads them, and
# `soutui bundle build` evaluates popularity and item-kNN, builds the search index (BM25 + semantic title
# vectors) and writes the bundle.

# %%
work = Path(tempfile.mkdtemp(prefix="lab09-"))
raw = pd.read_csv(DATA / "amazon-beauty" / "beauty_interactions.tsv", sep="\t")
titles = pd.read_csv(DATA / "amazon-beauty" / "beauty_item_titles.tsv", sep="\t").dropna(subset=["title"])
titles["title"] = titles["title"].map(html.unescape)
counts = raw.item_id.value_counts()
titled = counts[counts.index.isin(titles.item_id)]
new_items = titled.index[-2000:].to_series().sample(12, random_state=0).to_numpy()
events, shop_items = labkit.beauty_shop(0, labkit.budget(1500, 10**6), items=titled.index[: labkit.budget(800, 3000)])
events[["user_id", "item_id", "ts"]].to_csv(work / "events.csv", index=False)
catalogue = titles[titles.item_id.isin(np.concatenate([shop_items, new_items]))]
catalogue[["item_id", "title"]].to_csv(work / "items.csv", index=False)
done = labkit.soutui("data", "import", "generic", "--events", str(work / "events.csv"), "--items",
                     str(work / "items.csv"), "--name", "beauty-lab9", "--event-type", "purchase",
                     "--no-pseudonymize", "--replace")
print("kept:", done["rows_kept"])
built = labkit.soutui("bundle", "build", "--dataset", "beauty-lab9")
print(built["path"], "| default:", built["default_recommender"], "| models:", list(built["models"]))

# %% [markdown] tags=["zh"]
# ## 启动服务
#
# `--insecure-dev` 打开写接口（`POST /v1/events`）而不要密钥，`--demo` 打开只读接口；两者都只适合本机开发。
# 服务绑定在 127.0.0.1 的一个空闲端口上。

# %% [markdown] tags=["en"]
# ## Start the server
#
# `--insecure-dev` opens the write endpoints (`POST /v1/events`) without a key and `--demo` the read
# endpoints; both are for local development only. The server binds a free port on 127.0.0.1.

# %%
server = labkit.Server("--demo", "--insecure-dev", "--bundle", built["path"])
get, post = server.get, server.post
print("healthz:", server.health)
title_of = dict(zip(catalogue.item_id.astype(str), catalogue.title, strict=True))


def show(answer):
    print(f"model: {answer.get('model', '-')}, history: {answer.get('history_length', '-')}")
    for it in answer["items"][:5]:
        print(f"  {it['item_id']:>6}  {str(it.get('title'))[:60]:60s}  ({it['reason'][:40]})")

# %% [markdown] tags=["zh"]
# ## 新用户：没有历史怎么办
#
# 一个从没出现过的用户 `newcomer-1` 来了。模型没有他的任何历史，服务返回 `model: trending`：
# 近期交互最多的商品。这是最常见的冷启动兜底，它不个性化，但总比空列表好。

# %% [markdown] tags=["en"]
# ## A new user: what to show without history
#
# A user never seen before, `newcomer-1`, arrives. The model has no history for them, so the service answers
# with `model: trending`: the most interacted-with items of the recent window. It is the commonest cold-start
# fallback: not personal, but better than an empty list.

# %%
before = get("/v1/recommend/newcomer-1", k=10)
show(before)

# %% [markdown] tags=["zh", "ex:9.1"]
# ### 练习 9.1：写一批事件
#
# 这位新用户接着看了三个商品 `clicked`（按顺序）。写 `make_events(user_id, item_ids)`，返回
# `POST /v1/events` 的请求体 `{"events": [...]}`：每个事件有 `event_id`、`user_id`、`item_id`、
# `event_type`（这里是 `"view"`）。`event_id` 由客户端给定、每个事件不同：服务器用它去重，
# 网络超时后原样重发同一批不会重复计数。

# %% [markdown] tags=["en", "ex:9.1"]
# ### Exercise 9.1: write a batch of events
#
# The new user goes on to view three products `clicked` (in this order). Write `make_events(user_id, item_ids)`
# returning the body of `POST /v1/events`, `{"events": [...]}`: every event has an `event_id`, `user_id`,
# `item_id` and `event_type` (`"view"` here). The client chooses `event_id`, different for every event: the
# server deduplicates on it, so resending the same batch after a network timeout does not count it twice.

# %% tags=["exercise", "ex:9.1"]
def make_events(user_id, item_ids):
    return {"events": [{"user_id": user_id, "item_id": i, "event_type": "view"} for i in item_ids]}  # your code here


# %%
anchor = str(shop_items[5])  # a best seller; the user views it and two of its co-purchased items
co = events[events.user_id.isin(events.user_id[events.item_id == int(anchor)])].item_id.value_counts()
clicked = [anchor] + [str(i) for i in co.index if str(i) != anchor][:2]
if checks.lab09_events(make_events, EventBatch):
    batch = make_events("newcomer-1", clicked)
    print("first send:", post("/v1/events", batch))
    print("resent:    ", post("/v1/events", batch))  # the same event_ids: counted once
print("viewed:", [title_of[i][:40] for i in clicked])
after = get("/v1/recommend/newcomer-1", k=10)
show(after)

# %% [markdown] tags=["zh"]
# 第二次发送同一批，服务器回答 `duplicates: 3`，没有重复记账。接下来的推荐请求已经用上了三条新历史：
# 模型从 `trending` 变成了 item-kNN（或包里的默认模型），列表里是和刚看过的商品一起被买的东西。
# 这里没有重新训练：事件先写进磁盘上的日志（返回 2xx 之前 fsync），再更新内存里的用户历史，
# 模型在下一次请求时读最新的历史。训练好的参数要等下一次 `soutui retrain` 才会变。

# %% [markdown] tags=["en"]
# The second send of the same batch is answered `duplicates: 3`: nothing is counted twice. The next
# recommendation already uses the three new history items: the model went from `trending` to item-kNN (or the
# bundle's default), and the list holds what was bought together with the products just viewed. Nothing was
# retrained: an event is appended to the on-disk log (fsync'd before the 2xx), then the in-memory history is
# updated, and the model reads the latest history at the next request. The trained parameters change only
# with the next `soutui retrain`.

# %%
ranks_before = {it["item_id"]: r for r, it in enumerate(before["items"])}
ranks_after = {it["item_id"]: r for r, it in enumerate(after["items"])}
overlap = len(set(ranks_before) & set(ranks_after))
print(f"{overlap} of 10 items shared by the list before and after three views")
trend0 = [it["item_id"] for it in get("/v1/trending", k=10)["items"]]
burst = {"events": [{"event_id": f"burst-{n}", "user_id": f"shopper-{n}", "item_id": str(new_items[0]),
                     "event_type": "view"} for n in range(40)]}
print("a burst of 40 views of a new product:", post("/v1/events", burst))
trend1 = [it["item_id"] for it in get("/v1/trending", k=10)["items"]]
print(f"new product {new_items[0]} in trending before: {str(new_items[0]) in trend0}, after: "
      f"{str(new_items[0]) in trend1} (rank {trend1.index(str(new_items[0])) + 1 if str(new_items[0]) in trend1 else '-'})")

# %% [markdown] tags=["zh"]
# 热门趋势也是实时的：一个新品突然被 40 个人看了，它马上进入 `/v1/trending`。这就是新品最简单的曝光途径。

# %% [markdown] tags=["en"]
# Trending is live too: a new product suddenly viewed by 40 people enters `/v1/trending` at once, the simplest
# way for a new product to get exposure.

# %% [markdown] tags=["zh"]
# ## 新商品：靠内容被找到
#
# 协同过滤（热门、item-kNN）只认识有行为的商品，12 个新品对它们来说不存在。但新品有标题，
# 搜索索引建包时就把整个目录（包括新品）的标题编进了 BM25 和语义向量。用新品标题里的几个词去搜，看它排第几。

# %% [markdown] tags=["en"]
# ## New products: found through their content
#
# Collaborative filtering (popularity, item-kNN) knows only products with behaviour; to it the 12 new products
# do not exist. But they have titles, and the bundle's search index holds the whole catalogue's titles (new
# products included) in BM25 and in semantic vectors. Search with a few words of each new product's title and
# see where it ranks.

# %%
found = {}
for item in new_items:
    words = title_of[str(item)].split()[:4]
    hits = get("/v1/search", q=" ".join(words), k=10)["items"]
    ids = [h["item_id"] for h in hits]
    found[str(item)] = ids.index(str(item)) + 1 if str(item) in ids else None
    print(f"{str(item):>6} rank {found[str(item)] or '>10':>4}  q={' '.join(words)[:50]!r}")

# %% [markdown] tags=["zh", "ex:9.2"]
# ### 练习 9.2：用内容找相似商品
#
# 新品没有共现，“看了又看”只能靠内容。下面用 MiniLM 把目录里每个标题编码成一个单位长度的向量
# `vectors`（商品数, 384）。写 `similar_by_content(vectors, i, k)`：返回和第 `i` 个商品最相似（余弦相似度最高）
# 的 `k` 个商品的下标，从最相似的开始，**不包括它自己**。

# %% [markdown] tags=["en", "ex:9.2"]
# ### Exercise 9.2: similar products from content
#
# A new product has no co-occurrence, so "customers also viewed" has to come from content. Below, MiniLM encodes
# every catalogue title as a unit-length vector `vectors` (items, 384). Write `similar_by_content(vectors, i, k)`:
# return the indices of the `k` products most similar to product `i` (highest cosine similarity), most similar
# first, **not including the product itself**.

# %%
item_ids = catalogue.item_id.astype(str).to_numpy()
vectors = embed_texts(list(catalogue.title), "minilm", progress=False)
print(vectors.shape, "norms:", np.round(np.linalg.norm(vectors[:3], axis=1), 3))


# %% tags=["exercise", "ex:9.2"]
def similar_by_content(vectors, i, k):
    return list(np.argsort(vectors @ vectors[i])[:k])  # your code here


# %%
if checks.lab09_similar(similar_by_content):
    for item in new_items[:3]:
        i = int(np.flatnonzero(item_ids == str(item))[0])
        print(f"new: {title_of[str(item)][:70]}")
        for j in similar_by_content(vectors, i, 3):
            print(f"   ~ {title_of[item_ids[j]][:70]}")
    sims = np.array([vectors[int(np.flatnonzero(item_ids == str(it))[0])] @ vectors.T for it in new_items])
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(np.sort(sims, axis=1)[:, -2], bins=12, color="#4a7ab0")  # the best match other than itself
    ax.set(title="new products: cosine to their nearest catalogue title", xlabel="cosine", ylabel="new products")
    plt.tight_layout()
    plt.show()
server.stop()
print(f"lab ran in {time.perf_counter() - t_lab:.0f} s")

# %% [markdown] tags=["zh"]
# ## 小结
#
# - 实时：事件落盘后立即进入用户历史，下一次请求就生效；模型参数不动，等下一次重训。`event_id` 让重发安全。
# - 新用户：先给热门趋势，几次点击后就能用 item-kNN / SASRec 个性化。
# - 新商品：协同信号为零，只能靠内容——搜索（BM25 + 语义向量）能找到它，标题向量给出相似商品；
#   带标题的 SASRec（实验 5）把标题投影进商品向量，新品没训练过 ID 也有表示。热门趋势让新品在被点击后获得曝光。
#
# 快速模式用 1,500 个用户、800 个商品，数字只作演示。

# %% [markdown] tags=["en"]
# ## Summary
#
# - Real time: an event on disk enters the user's history at once and counts from the next request; the model's
#   parameters stay until the next retrain. `event_id` makes resending safe.
# - New users: trending first, personal (item-kNN / SASRec) after a few clicks.
# - New products: no collaborative signal, only content. Search (BM25 + semantic vectors) finds them, title
#   vectors give similar products, and the title-aware SASRec (lab 5) projects titles into its item vectors, so
#   an item whose id was never trained is still represented. Trending exposes a new product once it is clicked.
#
# The fast mode has 1,500 users and 800 products; its figures only illustrate.
