# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 10：可解释性
#
# 对应种子文档 **7.1 可解释性** 和问题 **Q3**。“为什么给我推荐这个？”——运营、客服和用户都会问。
# 解释必须是模型自己的：每个权重都用模型的分数单位，而且要能检验它是不是真的（忠实度）。
#
# **目标**
# - 用 `soutui explain --json` 和 API 的 `explain=true` 看一条推荐的理由；
# - 在一个小模型上比较两种归因：遮挡（occlusion）和 LIME；
# - 看搜索排序模型（LightGBM）的 TreeSHAP 特征贡献；
# - 做一个小的忠实度检验：去掉归因最高的历史商品 vs 随机去掉一个，推荐掉得更多吗？

# %% [markdown] tags=["en"]
# # Lab 10: Explainability
#
# Seed section **7.1 (explainability)** and question **Q3**. "Why am I shown this?" is asked by merchandisers,
# support staff and shoppers. An explanation must be the model's own: every weight in the model's score units,
# and checkable for being true (faithfulness).
#
# **Goals**
# - read the reason for a recommendation with `soutui explain --json` and `explain=true` on the API;
# - compare two attributions on a small model: occlusion and LIME;
# - read the TreeSHAP feature contributions of the search ranker (LightGBM);
# - run a small faithfulness check: does removing the top-attributed history item hurt the recommendation more
#   than removing a random one?

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from soutui.data.sequences import leave_one_out
from soutui.data.store import open_store
from soutui.evaluation.report import load_sequences
from soutui.models.attribution import history_weights
from soutui.models.registry import model_class
from soutui.search.engine import SearchConfig, SearchEngine
from soutui.search.evaluation import qrels_from_events, split, train_ltr

import checks
import labkit

DATA = labkit.setup()
t_lab = time.perf_counter()

# %% [markdown] tags=["zh"]
# ## `soutui explain`：一条推荐的理由
#
# 在 Amazon Beauty 上让 item-kNN 给用户 7 推荐，并解释排第一的商品。item-kNN 的分数本身就是加法：
# Σ_j 0.5^(往回的步数 / 半衰期) · sim[h_j, 商品]，所以每个历史商品的那一项就是它的精确贡献（“邻居证据”）。
# `reason` 从贡献最大的历史商品写出来。

# %% [markdown] tags=["en"]
# ## `soutui explain`: the reason for one recommendation
#
# On Amazon Beauty, item-kNN recommends for user 7 and explains its top pick. Item-kNN's score is additive
# already: Σ_j 0.5^(steps back / half-life) · sim[h_j, item], so each history item's own term is its exact
# contribution ("neighbour evidence"). The `reason` is written from the strongest history item.

# %%
labkit.soutui("data", "import", "amazon-beauty", "--data-dir", str(DATA))
why = labkit.soutui("explain", "--dataset", "amazon-beauty", "--model", "itemknn", "--user", "7")
print(why["model"], "| user", why["user_id"], "| item", why["item_id"], "|", why["reason"])
for a in why["attributions"][:5]:
    print(f"  {a['weight']:+.4f}  {a['kind']:12s} {a['name'][:70]}")
why_zh = labkit.soutui("explain", "--dataset", "amazon-beauty", "--model", "itemknn", "--user", "7", "--lang", "zh",
                       echo=False)
print("zh:", why_zh["reason"])

# %% [markdown] tags=["zh"]
# ## 遮挡和 LIME
#
# 对任何模型都能用的两种办法，都只需要模型的 `score`：
#
# - **遮挡**：第 j 个历史商品的权重 = 完整历史下的分数 − 去掉第 j 个之后的分数。
# - **LIME**：随机去掉历史的一部分（每个商品各以 ½ 的概率保留），打很多次分，用加权岭回归拟合一个
#   “保留了哪些商品 → 分数”的线性代理模型，它的系数就是权重。
#
# 对真正加法的模型两者一致；模型越不加法（商品之间有交互），两者差得越多。先自己实现遮挡。

# %% [markdown] tags=["en"]
# ## Occlusion and LIME
#
# Two methods that work for any model and need only its `score`:
#
# - **occlusion**: history item j's weight = score with the full history − score with position j removed.
# - **LIME**: drop random parts of the history (each item kept with probability ½), score many times, and fit a
#   weighted ridge regression "which items were kept → score"; the linear surrogate's coefficients are the
#   weights.
#
# On a truly additive model both agree; the less additive the model (items interacting), the more they differ.
# First, implement occlusion yourself.

# %% [markdown] tags=["zh", "ex:10.1"]
# ### 练习 10.1：遮挡权重
#
# 写 `occlusion_weights(score, history)`：`score(list_of_items)` 返回一个数（目标商品的分数），`history` 是商品列表。
# 返回一个和 `history` 一样长的列表，第 j 个是 `score(history) − score(history 去掉第 j 个位置)`。
# 下面先用一个加法打分器检验：每个商品的权重应当正好是它的那一项。

# %% [markdown] tags=["en", "ex:10.1"]
# ### Exercise 10.1: occlusion weights
#
# Write `occlusion_weights(score, history)`: `score(list_of_items)` returns one number (the target item's
# score), `history` is a list of items. Return a list as long as `history` whose j-th entry is
# `score(history) − score(history without position j)`. The check first uses an additive scorer: each item's
# weight should be exactly its own term.

# %% tags=["exercise", "ex:10.1"]
def occlusion_weights(score, history):
    return [score([h]) for h in history]  # your code here


# %%
toy_terms = {"lipstick": 2.0, "mascara": 0.5, "shampoo": -0.3}
toy = lambda items: 1.0 + sum(toy_terms[i] for i in items)  # noqa: E731 - a toy additive scorer
if checks.lab10_occlusion(occlusion_weights):
    print(dict(zip(toy_terms, occlusion_weights(toy, list(toy_terms)), strict=True)))

# %% [markdown] tags=["zh"]
# 现在在真实的小模型上比较：item-kNN 在 Beauty 的留一训练部分上拟合（不到一秒），对若干测试用户的第一推荐，
# 用 `soutui.models.attribution.history_weights` 分别算遮挡和 LIME 的权重（LIME 用 `lime` 包的 `LimeBase`，256 个样本）。

# %% [markdown] tags=["en"]
# Now on a real small model: item-kNN fitted on Beauty's leave-one-out training part (under a second); for the
# top pick of some test users, `soutui.models.attribution.history_weights` gives the occlusion and the LIME
# weights (LIME is the `lime` package's `LimeBase`, 256 samples).

# %%
data, content = load_sequences("amazon-beauty", encoder="none")
loo = leave_one_out(data)
knn = model_class("itemknn")()
knn.fit(loo.train, loo.valid, content=content)
test = loo.test
rng = np.random.default_rng(0)
eligible = [i for i in range(len(test)) if len(test.histories[i]) >= 2]
pairs = []
for i in rng.permutation(eligible)[: labkit.budget(40, 300)]:
    hist = np.asarray(test.histories[i], np.int64)
    ts = None if test.timestamps is None else np.asarray(test.timestamps[i])
    s = knn.score([hist], None if ts is None else [ts])[0].astype(float)
    s[hist] = -np.inf
    top = np.array([int(np.argmax(s))])
    occ = history_weights(knn, hist, top, ts, "occlusion")[0]
    lim = history_weights(knn, hist, top, ts, "lime")[0]
    pairs += [(o, m, int(np.argmax(occ) == np.argmax(lim))) for o, m in zip(occ, lim, strict=True)]
pairs = np.array(pairs)
print(f"{len(pairs)} history positions: Pearson r(occlusion, LIME) = {np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]:.3f}")
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(pairs[:, 0], pairs[:, 1], s=8, alpha=0.6)
ax.set(xlabel="occlusion weight", ylabel="LIME weight", title="item-kNN, Beauty test users")
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh"]
# item-kNN 几乎是加法的，所以点大多落在对角线附近；偏离来自 LIME 的随机样本和岭回归的收缩，以及时间衰减
# （去掉一个位置，更早的商品往回的步数就变了）。SASRec 这样有交互的模型，两种方法会差得更多。

# %% [markdown] tags=["en"]
# Item-kNN is nearly additive, so most points lie near the diagonal; the spread comes from LIME's random samples
# and ridge shrinkage, and from the time decay (removing a position changes the steps back of older items). On
# a model with interactions such as SASRec the two methods differ more.

# %% [markdown] tags=["zh"]
# ## API 的 `explain=true`
#
# 线上服务也能解释：把一个小店打成服务包，启动 `soutui serve --demo`，请求 `/v1/recommend/{user}?explain=true`。
# 每个结果多一个 `explanation`：方法、英文和中文的理由、权重列表。

# %% [markdown] tags=["en"]
# ## `explain=true` on the API
#
# The live service explains too: bundle a small shop, start `soutui serve --demo` and ask
# `/v1/recommend/{user}?explain=true`. Every result gets an `explanation`: the method, the reason in English and
# Chinese, and the list of weights.

# %%
work = Path(tempfile.mkdtemp(prefix="lab10-"))
raw = pd.read_csv(DATA / "amazon-beauty" / "beauty_interactions.tsv", sep="\t")
shop_items = raw.item_id.value_counts().index[:800]
shop = raw[raw.item_id.isin(shop_items)]
buyers = shop.user_id.value_counts()
shop = shop[shop.user_id.isin(buyers[buyers >= 3].index[:1500])]
shop = shop.assign(ts=shop.timestamp.fillna(shop.timestamp.min()).astype("int64") + shop.position)
shop[["user_id", "item_id", "ts"]].to_csv(work / "events.csv", index=False)
titles = pd.read_csv(DATA / "amazon-beauty" / "beauty_item_titles.tsv", sep="\t").dropna(subset=["title"])
titles[titles.item_id.isin(shop_items)][["item_id", "title"]].to_csv(work / "items.csv", index=False)
labkit.soutui("data", "import", "generic", "--events", str(work / "events.csv"), "--items", str(work / "items.csv"),
              "--name", "shop10",
              "--event-type", "purchase", "--no-pseudonymize", "--replace")
built = labkit.soutui("bundle", "build", "--dataset", "shop10", "--no-search")
server = labkit.Server("--demo", "--bundle", built["path"])
get = server.get
user = str(shop.user_id.value_counts().index[0])
answer = get(f"/v1/recommend/{user}", k=3, explain="true")
for it in answer["items"]:
    ex = it["explanation"]
    print(f"{it['item_id']:>6} [{ex['method']}] {ex['reason'][:60]} | {ex['reason_zh'][:30]}")
    for a in ex["attributions"][:3]:
        print(f"        {a['weight']:+.4f} {a['kind']} {a['name'][:50]}")
server.stop()

# %% [markdown] tags=["zh"]
# ## 搜索：排序模型的 TreeSHAP
#
# 搜索的排序模型是 LightGBM（实验 7）。TreeSHAP（LightGBM 的 `pred_contrib=True`）把每个结果的分数精确地拆成
# 每个特征的贡献，加上一个期望值（常数）正好等于分数。`SearchEngine.explain(query, ids, "ltr")` 给出带可读名字的贡献。
# 快速模式在 300 个训练查询、约 3,500 个商品上训练。

# %% [markdown] tags=["en"]
# ## Search: TreeSHAP of the ranker
#
# The search ranker is LightGBM (lab 7). TreeSHAP (LightGBM's `pred_contrib=True`) splits each result's score
# exactly into per-feature contributions which, plus an expected value (a constant), equal the score.
# `SearchEngine.explain(query, ids, "ltr")` gives them with readable names. The fast mode trains on 300
# training queries and about 3,500 products.

# %%
labkit.soutui("data", "import", "homedepot-search", "--data-dir", str(DATA))
store = open_store(read_only=True)
items, events = store.read("homedepot-search", "items"), store.read("homedepot-search", "events")
store.close()
train_q, test_q = split(qrels_from_events(events))
if labkit.FAST:  # lab 7's sample (its title vectors are cached)
    pick = np.random.default_rng(0)
    train_q = {q: train_q[q] for q in pick.choice(sorted(train_q), 300, replace=False)}
    test_q = {q: test_q[q] for q in pick.choice(sorted(test_q), 100, replace=False)}
    judged = {i for rels in [*train_q.values(), *test_q.values()] for i in rels}
    others = pick.choice(sorted(set(items["item_id"].astype(str)) - judged), 3000, replace=False)
    items = items[items["item_id"].astype(str).isin(judged | set(others))].reset_index(drop=True)
engine = SearchEngine.build(items, tempfile.mkdtemp(prefix="lab10-index-"), config=SearchConfig(encoders=["minilm"]))
train_ltr(engine, train_q, progress=False)
query = "cordless drill battery"
hits, _ = engine.search(query, k=3, method="ltr")
ids = [h.item_id for h in hits]
for hit, attrs in zip(hits, engine.explain(query, ids, "ltr"), strict=True):
    total = sum(a.weight for a in attrs)
    print(f"{hit.title[:60]} | score {hit.score:.4f} = contributions {total:.4f} + expected {hit.score - total:.4f}")
    for a in attrs[:4]:
        print(f"   {a.weight:+.4f}  {a.name}")

# %% [markdown] tags=["zh"]
# ## 忠实度：解释是真的吗？
#
# 一个解释说“因为你买过 X”，那去掉 X，这条推荐就应该明显往下掉——比随机去掉一个历史商品掉得多。
# 对每个测试用户：解释第一推荐，分别去掉归因最高的历史商品和一个随机的其他商品，记下推荐在全量排序里掉到第几名
# （0 = 还是第一）。“最高胜过随机”的比例越接近 1 越忠实，0.5 就等于没有信息。

# %% [markdown] tags=["en"]
# ## Faithfulness: is the explanation true?
#
# If an explanation says "because you bought X", removing X should push the recommendation down, further than
# removing a random history item. For each test user: explain the top pick, then remove the top-attributed
# history item and, separately, a random other one, and note the pick's new rank in the full ranking (0 = still
# first). The share where the top removal hurts more ("top beats random") is near 1 for a faithful method; 0.5
# means no information.

# %%
def rank_of(scores, item, exclude):
    s = scores.astype(float).copy()
    s[exclude] = -np.inf
    return int((s > s[item]).sum() + (s == s[item]).sum() - 1)


falls = []
for i in rng.permutation(eligible)[: labkit.budget(300, 2000)]:
    hist = np.asarray(test.histories[i], np.int64)
    ts = None if test.timestamps is None else np.asarray(test.timestamps[i])
    s = knn.score([hist], None if ts is None else [ts])[0].astype(float)
    s[hist] = -np.inf
    item = int(np.argmax(s))
    (row,) = knn.attribute(hist, np.array([item]), ts)
    w = np.zeros(len(hist))
    for a in row:
        if a.kind == "history_item" and a.position is not None:
            w[a.position] = a.weight
    top = len(hist) - 1 - int(np.argmax(w[::-1]))
    rand = int(rng.choice([j for j in range(len(hist)) if j != top]))
    cut = [np.delete(np.arange(len(hist)), [j]) for j in (top, rand)]
    after = knn.score([hist[c] for c in cut], None if ts is None else [ts[c] for c in cut])
    falls.append((rank_of(after[0], item, hist), rank_of(after[1], item, hist)))
falls = np.array(falls)
print(f"{len(falls)} users; median fall: top-attributed removed {np.median(falls[:, 0]):.0f}, "
      f"random removed {np.median(falls[:, 1]):.0f}")

# %% [markdown] tags=["zh", "ex:10.2"]
# ### 练习 10.2：“最高胜过随机”的比例
#
# 写 `top_beats_random(fall_top, fall_random)`：两个同样长的名次列表（每个用户一对）。去掉最高归因后掉得更多
# （名次更大）记 1，掉得一样记 ½，更少记 0；返回平均值。

# %% [markdown] tags=["en", "ex:10.2"]
# ### Exercise 10.2: the top-beats-random share
#
# Write `top_beats_random(fall_top, fall_random)`: two lists of ranks of one length (one pair per user). A user
# counts 1 when removing the top-attributed item pushes the pick further down (a larger rank), ½ for a tie, 0
# otherwise; return the mean.

# %% tags=["exercise", "ex:10.2"]
def top_beats_random(fall_top, fall_random):
    return float(np.mean(np.asarray(fall_top) > np.asarray(fall_random)))  # your code here


# %%
if checks.lab10_top_beats_random(top_beats_random):
    share = top_beats_random(falls[:, 0], falls[:, 1])
    print(f"item-kNN neighbour evidence, {len(falls)} Beauty test users: top beats random {share:.3f} "
          f"(ties {np.mean(falls[:, 0] == falls[:, 1]):.3f})")
print(f"lab ran in {time.perf_counter() - t_lab:.0f} s")

# %% [markdown] tags=["zh"]
# ## 小结
#
# - 解释用模型自己的分数单位：item-kNN 的邻居证据是精确的加法拆分；任何模型都可以用遮挡或 LIME。
# - `soutui explain --json`、API 的 `explain=true` 和店面的“为什么推荐这个？”用的是同一个钩子 `Recommender.attribute`。
# - 搜索排序模型用 TreeSHAP：特征贡献加上期望值就是分数。
# - 解释要检验：去掉归因最高的商品应当比随机去掉伤害更大。`benchmarks/explain_faithfulness.py` 在更多用户和
#   SASRec 上做同样的检验（`docs/explanations.md`）。
# - 遮挡解释的是分数；`method="counterfactual"`（反事实，PRINCE / ACCENT 的单步形式）解释的是名次：去掉每个
#   历史商品后，这条推荐领先“没展示的最好商品”的差距少了多少。去掉一个商品会让所有分数一起变的模型（比如 MLP
#   的用户向量）上，它比遮挡忠实得多（0.926 对 0.80）。
#
# 快速模式用 40 个用户比较遮挡和 LIME、300 个用户做忠实度检验，数字只作演示。

# %% [markdown] tags=["en"]
# ## Summary
#
# - Explanations are in the model's own score units: item-kNN's neighbour evidence is an exact additive split;
#   any model can use occlusion or LIME.
# - `soutui explain --json`, `explain=true` on the API and the storefront's "why this?" use one hook,
#   `Recommender.attribute`.
# - The search ranker uses TreeSHAP: the feature contributions plus the expected value are the score.
# - Explanations must be checked: removing the top-attributed item should hurt more than a random removal.
#   `benchmarks/explain_faithfulness.py` runs the same check on more users and on SASRec
#   (`docs/explanations.md`).
# - Occlusion explains the score; `method="counterfactual"` (the single-action form of PRINCE / ACCENT)
#   explains the rank: how much of the pick's lead over the best item not shown each history item accounts
#   for. On a model where one removal moves every score (the MLP's user vector) it is far more faithful than
#   occlusion (0.926 against 0.80).
#
# The fast mode compares occlusion and LIME on 40 users and checks faithfulness on 300; its figures only
# illustrate.
