# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 12：监控与线上实验
#
# 对应种子文档 **2.4 监控** 和 **2.5 A/B 测试**。模型上线以后，数据在变：新商品、新用户、流量从爆款移向长尾。
# 这个实验回答三个问题：数据漂移了多少（PSI）？新训练的模型该不该替换线上模型（`soutui retrain` 的闸门）？
# 两个推荐算法给真实用户看，哪个更好（A/A、A/B 和交错实验，`soutui experiment simulate`）？
#
# **目标**
# - 用 PSI（群体稳定性指数）比较训练窗口和之后的商品热度分布；
# - 让 `soutui retrain` 在最近的一段时间上比较候选模型和线上模型，读它的决定记录；
# - 用回放模拟器跑 A/A、A/B 和交错实验，分清“曝光级”和“用户级”的结论。

# %% [markdown] tags=["en"]
# # Lab 12: Monitoring and experiments
#
# Seed sections **2.4 (monitoring)** and **2.5 (A/B testing)**. Once a model is live the data moves: new
# products, new users, traffic drifting from best sellers to the long tail. This lab answers three questions:
# how far has the data drifted (PSI)? Should a freshly trained model replace the live one (the gate of
# `soutui retrain`)? Shown to real shoppers, which of two recommenders is better (A/A, A/B and interleaving with
# `soutui experiment simulate`)?
#
# **Goals**
# - compare the item-popularity distribution of the training window with what came later, by PSI
#   (population stability index);
# - let `soutui retrain` compare a candidate with the serving model on the most recent events and read its record;
# - run A/A, A/B and interleaving with the replay simulator, and tell the impression-level verdict from the
#   user-level one.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import tempfile
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from soutui.serving.monitoring import popularity_bins, psi

import checks
import labkit

DATA = labkit.setup()
t_lab = time.perf_counter()

# %% [markdown] tags=["zh"]
# ## 一个小店和它的时间线
#
# 取 Amazon Beauty 里被评论最多的商品（快速模式 800 个）和买过其中至少 3 个的用户（快速模式抽 1,500 个）。
# 按时间切开：最早的 80 % 事件是“训练窗口”，模型就是在它上面训练的；之后的 20 % 是“上线以后”。

# %% [markdown] tags=["en"]
# ## A small shop and its timeline
#
# Take the most reviewed Amazon Beauty products (800 in fast mode) and users who bought at least 3 of them
# (a sample of 1,500 in fast mode). Cut by time: the earliest 80 % of the events are the "training window" the
# model is trained on; the later 20 % are "after launch".

# %%
work = Path(tempfile.mkdtemp(prefix="lab12-"))
events, shop_items = labkit.beauty_shop(labkit.budget(800, 3000), labkit.budget(1500, 10**6))
cut = int(events.ts.quantile(0.8))
old, new = events[events.ts <= cut], events[events.ts > cut]
print(f"{len(events)} events; training window until {pd.to_datetime(cut, unit='s'):%Y-%m-%d}: {len(old)}, after: {len(new)}")

# %% [markdown] tags=["zh"]
# ## 数据漂移：PSI
#
# 群体稳定性指数比较两个分布在同一组箱子上的份额：期望 e（训练窗口）和实际 a（上线以后）。
#
# PSI = Σ (a_b − e_b) · ln(a_b / e_b)
#
# 它是对称化的 KL 散度。惯例：< 0.1 没有变化，0.1–0.25 中等变化，> 0.25 大变化（soutui 默认的报警阈值 0.25）。
# 份额为 0 的箱子先抬到 10⁻⁴，否则 ln(0) 是无穷。

# %% [markdown] tags=["en"]
# ## Data drift: PSI
#
# The population stability index compares the shares of two distributions over the same bins: expected e
# (training window) and actual a (after launch).
#
# PSI = Σ (a_b − e_b) · ln(a_b / e_b)
#
# It is the symmetrised Kullback-Leibler divergence. The usual reading: < 0.1 no shift, 0.1–0.25 a moderate
# shift, > 0.25 a major one (soutui's default alert threshold is 0.25). A share of 0 is raised to 10⁻⁴ first,
# since ln(0) is infinite.

# %% [markdown] tags=["zh", "ex:12.1"]
# ### 练习 12.1：计算 PSI
#
# 写 `my_psi(expected, actual)`：两个同样长的计数（或份额）列表，先各自归一成份额，把小于 1e-4 的份额抬到 1e-4，
# 再按上面的公式求和，返回一个浮点数。

# %% [markdown] tags=["en", "ex:12.1"]
# ### Exercise 12.1: compute PSI
#
# Write `my_psi(expected, actual)`: two lists of counts (or shares) of one length. Turn each into shares, raise
# any share below 1e-4 to 1e-4, then sum the formula above and return a float.

# %% tags=["exercise", "ex:12.1"]
def my_psi(expected, actual):
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    return float(np.sum(a * np.log(a / e)))  # your code here


# %%
if checks.lab12_psi(my_psi):
    print("yours:", round(my_psi([50, 30, 20], [30, 30, 40]), 4), "| soutui's:", round(psi([50, 30, 20], [30, 30, 40]), 4))

# %% [markdown] tags=["zh"]
# 监控里用的正是这个函数（`soutui.serving.monitoring.psi`）。比较商品热度时，按训练窗口里的事件数把商品排好，
# 切成 10 个“事件量相等”的箱子（箱 0 是最热的那批，`popularity_bins`）；每个箱子期望 10 % 的事件。
# 下面把“上线以后”按时间切成 4 段，每段算一次 PSI，再算一次“新商品份额”：训练窗口里从没出现过的商品占的比例。

# %% [markdown] tags=["en"]
# Monitoring uses exactly this function (`soutui.serving.monitoring.psi`). For item popularity, items are ranked
# by their training-window events and cut into 10 bins of equal event mass (bin 0 = the head,
# `popularity_bins`); each bin expects 10 % of the events. Below, "after launch" is cut into 4 periods by time;
# each gets a PSI, and a new-item share: the share of events on items the training window never saw.

# %%
train_counts = Counter(old.item_id.astype(str))
bins = popularity_bins(train_counts, 10)
expected = np.bincount([bins[i] for i in train_counts], weights=list(train_counts.values()), minlength=10)
later = new.sort_values("ts")
periods = [later.iloc[idx] for idx in np.array_split(np.arange(len(later)), 4)]
rows = []
for n, part in enumerate(periods):
    ids = part.item_id.astype(str)
    known = ids[ids.isin(bins)]
    actual = np.bincount(known.map(bins), minlength=10)
    rows.append({"period": n + 1, "from": f"{pd.to_datetime(part.ts.min(), unit='s'):%Y-%m-%d}", "events": len(part),
                 "psi": round(psi(expected, actual), 3), "new_item_share": round(1 - len(known) / len(part), 3)})
drift = pd.DataFrame(rows)
print(drift.to_string(index=False))
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(np.arange(10) - 0.2, expected / expected.sum(), 0.4, label="training window")
ax.bar(np.arange(10) + 0.2, actual / actual.sum(), 0.4, label=f"period {len(periods)}")
ax.set(xlabel="popularity bin (0 = head)", ylabel="share of events", title="item popularity, equal-mass bins")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] tags=["zh"]
# 读这张表：PSI 超过 0.25 就会报警；新商品份额是训练窗口里没出现过的商品（之后上架、或训练时没人买过）占的比例。
# 新商品不进 PSI 的箱子，单独作为一个数字报警（`new_items`）：把它当成一个份额下限 10⁻⁴ 的箱子，
# 几个百分点就会把 PSI 推过 0.25。快速模式样本小，数字只作演示；`docs/monitoring.md` 有全量 Beauty 上逐周的数字。

# %% [markdown] tags=["en"]
# Reading the table: a PSI above 0.25 raises the alert; the new-item share is the share of events on products
# the training window never saw (listed later, or never bought in it). New items are not a PSI bin but their own figure and alert
# (`new_items`): as a bin with a 10⁻⁴ floor, a few percent of them alone would push the PSI past 0.25. The fast
# mode's sample is small and its figures only illustrate; `docs/monitoring.md` has week-by-week figures on all
# of Beauty.

# %% [markdown] tags=["zh"]
# ## 重训的闸门：`soutui retrain`
#
# 漂移了就该重训，但新模型不一定更好。`soutui retrain` 把最近一段事件留出来当考题：候选模型在这段之前的事件上训练，
# 然后和线上服务包里的模型在这段上比 NDCG@10；候选 ≥ 线上 − margin 才替换（promote），并写出新的服务包。
# 每次决定都追加到 `$SOUTUI_HOME/runs/retrain-<dataset>.jsonl`，带配对差值的 95 % 区间和 p 值。
#
# 下面先用训练窗口的数据导入、打包（线上模型），再导入全部事件（上线以后的也到了），然后让 item-kNN 过闸门。
# 闸门的窗口不会伸进线上模型训练过的数据（`data_until`），否则线上模型在它见过的题上考试，分数虚高。

# %% [markdown] tags=["en"]
# ## The retraining gate: `soutui retrain`
#
# Drift calls for retraining, but a new model is not necessarily better. `soutui retrain` holds out the most
# recent events as the exam: the candidate is trained on the events before them, then compared with the serving
# bundle's model on them by NDCG@10; it is promoted (and a new bundle written) only when candidate ≥ serving −
# margin. Every decision is appended to `$SOUTUI_HOME/runs/retrain-<dataset>.jsonl`, with the paired
# difference's 95 % interval and p-value.
#
# Below, the training window is imported and bundled (the serving model), then all events are imported (the
# later ones have arrived), and item-kNN goes through the gate. The gate's window never reaches into the data the
# serving model was built from (`data_until`): judged on events it has seen, the serving model would look far
# better than it is.

# %%
old[["user_id", "item_id", "ts"]].to_csv(work / "old.csv", index=False)
events[["user_id", "item_id", "ts"]].to_csv(work / "all.csv", index=False)
common = ["--name", "shop12", "--event-type", "purchase", "--no-pseudonymize", "--replace"]
labkit.soutui("data", "import", "generic", "--events", str(work / "old.csv"), *common)
built = labkit.soutui("bundle", "build", "--dataset", "shop12", "--no-search")
print("serving bundle:", built["version"], "| data_until:", pd.to_datetime(built["data_until"], unit="s"))
labkit.soutui("data", "import", "generic", "--events", str(work / "all.csv"), *common)
record = labkit.soutui("retrain", "--dataset", "shop12", "--model", "itemknn", "--window-frac", "0.2",
                       "--encoder", "none")
gate = pd.DataFrame({side: record[side] for side in ("candidate", "serving")}).T
print(gate.to_string())
print("window:", {k: record["window"][k] for k in ("cutoff_utc", "events", "targets", "users")})
print("difference:", record["difference"])
print("promoted:", record["promoted"], "|", record["reason"])

# %% [markdown] tags=["zh"]
# 读记录：`targets_known` 是线上模型认识的考题商品数——训练窗口之后才第一次出现的商品，线上模型根本排不出来，
# 算作没命中。`difference` 是每道题的 NDCG@10 差（候选 − 线上）的配对 t 检验；闸门只按 margin 决定，
# 区间告诉你这么大的窗口分不清多大的差。如果没有替换，记录的 `reason` 说了原因；替换了的话，`bundle` 是新包的路径，
# `soutui serve --watch` 会不停机地换上它。
#
# 写这个实验时的快速模式运行里，候选认识全部考题商品，线上模型只认识约 63 %，候选的 NDCG@10 却更低（0.048 对 0.056），
# 没有被替换：多训练了数据不等于更好，这正是要有闸门的原因。

# %% [markdown] tags=["en"]
# Reading the record: `targets_known` counts the window's targets the model knows: an item first seen after the
# training window cannot be ranked by the serving model at all and counts as a miss. `difference` is the paired
# t-test of per-target NDCG@10 (candidate − serving); the gate decides by the margin alone, and the interval
# says how large a gap a window of this size cannot tell from noise. When not promoted, the record's `reason`
# says why; when promoted, `bundle` is the new bundle's path, which `soutui serve --watch` swaps in without
# downtime.
#
# In the fast-mode run when this lab was written, the candidate knew every target item and the serving model
# about 63 % of them, yet the candidate's NDCG@10 was lower (0.048 vs 0.056) and it was not promoted: more
# training data is not automatically better, which is why there is a gate.

# %% [markdown] tags=["zh"]
# ## 线上实验：A/A、A/B 和交错
#
# 离线指标说 item-kNN 比热门好，用户会同意吗？`soutui experiment simulate` 用真实的留一测试用户回放：
# 服务端拿着每个用户除最后一次外的历史，最后一次购买的商品就是他想要的，列表里有它就点击。
# 它跑的是 `soutui serve` 的真代码（分流、交错、记账、统计）。模拟用的是完整的 Amazon Beauty 数据集（不是上面的小店）。
#
# - **A/A**：两组都是 item-kNN。一个正确的实验应该几乎从不宣布赢家（5 % 的假阳性）。
# - **A/B**：按用户分两半，一半看热门，一半看 item-kNN，比较每个用户的点击数。
# - **交错**：每个用户看到的是两个列表交错成的一个列表，点击记给放进这个商品的那一队。同一批用户比两个算法，
#   通常比 A/B 需要的用户少得多。

# %% [markdown] tags=["en"]
# ## Online experiments: A/A, A/B and interleaving
#
# Offline, item-kNN beats popularity; will shoppers agree? `soutui experiment simulate` replays the real
# leave-one-out test users: the server holds each one's history but the last event, and the last purchased item
# is what they want; when the list shows it, they click. It runs the real code of `soutui serve` (assignment,
# interleaving, crediting, statistics). The simulation uses the whole Amazon Beauty dataset (not the small
# shop above).
#
# - **A/A**: item-kNN on both arms. A sound experiment should almost never name a winner (5 % false positives).
# - **A/B**: users split in two halves, one sees popularity, the other item-kNN; clicks per user are compared.
# - **Interleaving**: every user sees one list interleaved from both arms' lists, and a click is credited to the
#   team that placed the item. Both algorithms are compared on the same users, which usually needs far fewer
#   users than A/B.

# %%
users = str(labkit.budget(600, 4000))
runs = {
    "A/A": labkit.soutui("experiment", "simulate", "--a", "itemknn", "--b", "itemknn", "--method", "ab", "--users", users),
    "A/B": labkit.soutui("experiment", "simulate", "--a", "popularity", "--b", "itemknn", "--method", "ab", "--users", users),
    "interleave": labkit.soutui("experiment", "simulate", "--a", "popularity", "--b", "itemknn", "--method",
                                "interleave", "--users", users),
}
verdicts = pd.DataFrame([{"run": name, "impressions": r["impressions"],
                          "user-level winner": str(r["winner"]), "user-level p": round(r["p_value"], 4),
                          "impression-level winner": str(r["impression_level"]["winner"]),
                          "impression-level p": round(r["impression_level"]["p_value"], 4)}
                         for name, r in runs.items()])
print(verdicts.to_string(index=False))
print("A/B CTR per arm:", {arm: round(v["ctr"], 4) for arm, v in runs["A/B"]["report"]["arms"].items()})
print("interleaving, users preferring each arm:", runs["interleave"]["test"]["preferences"])

# %% [markdown] tags=["zh"]
# A/B 按用户随机分组，而一个用户会看很多个列表，他的这些曝光是相关的。把曝光当成独立样本的检验（曝光级）
# 区间太窄、p 值太小：`docs/experiments.md` 的回放里，A/A 实验有 20 % 的时候在曝光级“宣布了赢家”。
# 所以 soutui 的结论（`winner`）来自用户级检验：A/B 用每个用户点击数的 Welch t 检验，交错用“更偏好哪一队的用户数”的二项检验。
# 上表里曝光级和用户级不一致的地方，就是这个问题。

# %% [markdown] tags=["en"]
# A/B randomises users, and a user sees many lists, so their impressions are correlated. A test that treats
# impressions as independent (impression level) has too narrow an interval and too small a p-value: in the
# replays of `docs/experiments.md`, A/A named a winner at the impression level 20 % of the time. So soutui's
# verdict (`winner`) is the user-level test's: Welch's t-test of clicks per user for A/B, a binomial test of the
# users preferring each team for interleaving. Where the table's impression-level and user-level columns
# disagree, this is the reason.

# %% [markdown] tags=["zh", "ex:12.2"]
# ### 练习 12.2：团队选拔式交错（team-draft）
#
# 写 `interleave(a, b, coins, k)`：`a`、`b` 是两队的排序列表，返回长度至多 `k` 的 `[(商品, 队), ...]`，队是 `"a"` 或 `"b"`。
# 规则：选得少的队先选；两队选的一样多时，从 `coins` 里按顺序取下一个硬币（`"a"` 或 `"b"`）决定谁先；
# 每队选自己列表里排名最高、还没展示过的商品；一队没得选了，就由另一队选；两队都空了就停。

# %% [markdown] tags=["en", "ex:12.2"]
# ### Exercise 12.2: team-draft interleaving
#
# Write `interleave(a, b, coins, k)`: `a` and `b` are the two teams' ranked lists; return at most `k` pairs
# `[(item, team), ...]`, team `"a"` or `"b"`. Rules: the team with fewer picks goes next; when both have as
# many, the next coin of `coins` (`"a"` or `"b"`, taken in order) decides; each team picks its highest-ranked
# item not shown yet; a team with nothing left lets the other pick; stop when both are empty.

# %% tags=["exercise", "ex:12.2"]
def interleave(a, b, coins, k):
    out = []
    for x, y in zip(a, b, strict=False):  # your code here
        out += [(x, "a"), (y, "b")]
    return out[:k]


# %%
if checks.lab12_team_draft(interleave):
    shown = interleave(["p1", "p2", "p3", "p4"], ["p2", "p5", "p1", "p6"], ["b", "a"], 4)
    print("shown:", shown)
    clicks = {"p1", "p5"}
    wins = Counter(team for item, team in shown if item in clicks)
    print("clicked", sorted(clicks), "-> credited:", dict(wins), "-> this impression is a", "tie" if wins["a"] == wins["b"]
          else f"win for {'a' if wins['a'] > wins['b'] else 'b'}")
print(f"lab ran in {time.perf_counter() - t_lab:.0f} s")

# %% [markdown] tags=["zh"]
# ## 小结
#
# - 漂移：PSI 比较同一组箱子上的份额，< 0.1 稳定、> 0.25 大变化；新商品份额单独看。服务运行时 `/metrics` 和
#   `/v1/admin/monitoring` 一直在算这些数字（`docs/monitoring.md`）。
# - 重训：`soutui retrain` 只在最近的窗口上候选不比线上差时才替换，每次决定都有记录（`docs/retrain.md`）。
# - 实验：先跑 A/A 确认不会乱报赢家；按用户随机，就按用户检验；交错用同一批用户比两个算法，更省用户
#   （`docs/experiments.md`）。事先定好用户数，到了再看结论：反复偷看会抬高假阳性。
#
# 快速模式用 1,500 个用户、800 个商品和 600 个模拟用户，数字只作演示。

# %% [markdown] tags=["en"]
# ## Summary
#
# - Drift: PSI compares shares over the same bins, < 0.1 stable, > 0.25 a major shift; the new-item share is
#   read on its own. A running server computes these all the time at `/metrics` and `/v1/admin/monitoring`
#   (`docs/monitoring.md`).
# - Retraining: `soutui retrain` promotes only when the candidate is no worse than the serving model on the most
#   recent window, and records every decision (`docs/retrain.md`).
# - Experiments: run an A/A first to check that no winner is named at random; randomise by user, test by user;
#   interleaving compares both algorithms on the same users and needs fewer of them (`docs/experiments.md`).
#   Fix the number of users in advance and read the verdict then: peeking again and again inflates false
#   positives.
#
# The fast mode has 1,500 shop users, 800 products and 600 simulated users; its figures only illustrate.
