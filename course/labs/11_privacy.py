# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown] tags=["zh"]
# # 实验 11：隐私保护
#
# 对应种子文档 **7.5 模型安全性与隐私保护** 和 **Q5 如何保护用户隐私**。种子列了四条路：数据脱敏、差分隐私、
# 联邦学习、遵守法规。这个实验把前三条在 soutui 上真跑一遍，再看第四条里最具体的一项——“被遗忘权”——落到系统里是什么样。
#
# **目标**
# - 入口处：`soutui data import` 用 HMAC 密钥把用户 ID 换成假名、把查询里的手机号和邮箱打码，库里找不到原始 ID；
# - 删除：在运行中的 `soutui serve` 上调 `DELETE /v1/users/{id}`，确认这个用户的事件、实时历史、在热门榜里的份额都没了，
#   再用 `soutui data forget` 从命令行删另一个用户；
# - 差分隐私训练（DP-SGD）：读懂训练记录里的 `privacy`（ε、δ、噪声倍数、裁剪），用 Opacus 的记账器自己算一遍 ε，
#   画出“隐私预算—效果”曲线；
# - 联邦学习：`soutui federated` 让数据不出客户端，算清每轮传多少字节，和集中训练比效果。
#
# 先说结论里不好听的部分：文档 `docs/privacy.md` 和 `docs/federated.md` 写明，在完整预算下 ε = 8 的 DP SASRec
# 只保留了不加隐私时 NDCG@10 的 10-12 %（大约是热门榜的水平）；联邦学习 4 个客户端在同等算力（10 轮 x 每轮 4 个本地
# epoch，对集中训练 40 个 epoch，3 个种子）下达到集中训练的 90 %，在议题允许的 15 % 以内（16 个客户端 60 %，一个种子）。
# 本实验不会说得比文档更好。

# %% [markdown] tags=["en"]
# # Lab 11: Privacy
#
# Seed sections **7.5 (model security and privacy)** and **Q5 (how to protect users' privacy)**. The seed lists four
# roads: de-identification, differential privacy, federated learning and compliance with the law. This lab drives the
# first three on soutui for real, then looks at the most concrete part of the fourth, the right to be forgotten, as
# the system implements it.
#
# **Goals**
# - at the door: `soutui data import` replaces user ids by HMAC pseudonyms and masks phone numbers and e-mails in
#   queries, so the store holds no raw id;
# - deletion: call `DELETE /v1/users/{id}` on a running `soutui serve` and check that the user's events, live history
#   and share of trending are gone, then forget another user with `soutui data forget`;
# - differentially private training (DP-SGD): read the `privacy` record (epsilon, delta, noise multiplier, clipping),
#   recompute epsilon with Opacus's accountant, and plot a privacy-utility curve;
# - federated learning: `soutui federated` keeps the data on the clients; count the bytes of a round and compare the
#   result with centralised training.
#
# The unflattering part first: `docs/privacy.md` and `docs/federated.md` say that at the full budget a DP SASRec at
# eps = 8 keeps 10-12 % of its non-private NDCG@10 (about the level of item popularity), and that federated learning
# with 4 clients reaches 90 % of the centralised model at the same compute (10 rounds x 4 local epochs against 40
# epochs, 3 seeds), inside the 15 % (16 clients: 60 %, one seed). This lab claims nothing better than the docs.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd().parent))
import json
import math
import os
import resource
import secrets
import tempfile
import time
import urllib.request
import uuid

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from soutui.data.privacy import pseudonym
from soutui.data.store import open_store

import checks_privacy as privacy_checks
import labkit

DATA = labkit.setup()
HOME = Path(os.environ.get("SOUTUI_HOME", ".soutui")).resolve()
t_lab = time.perf_counter()
# the shop's secret: importer and server must share it, and it is never written to the store
os.environ.setdefault("SOUTUI_PSEUDONYM_KEY", secrets.token_hex(32))
KEY = os.environ["SOUTUI_PSEUDONYM_KEY"].encode()

# %% [markdown] tags=["zh"]
# ## 入口处：假名和打码
#
# 拿 Amazon Beauty 当一家店的导出文件：最热的商品（快速模式 600 个）和买过其中至少 3 个的顾客（快速模式抽 1,200 个），
# `customer` 列是顾客在店里的账号（这里用评论者 ID 代替），`sku` 是商品。再往前三行塞进搜索词，其中两条带着手机号和邮箱——
# 真实的搜索日志里这种东西并不少见。
#
# 导入时不加 `--no-pseudonymize`，soutui 就会在**写盘之前**做两件事：用户 ID 换成 `u_` + HMAC-SHA256(密钥, ID)，
# 文本里的邮箱、手机号、身份证号、银行卡号换成 `[EMAIL]`、`[PHONE]` 这样的占位符。没有密钥它直接拒绝导入。

# %% [markdown] tags=["en"]
# ## At the door: pseudonyms and masking
#
# Take Amazon Beauty as a shop's export: the best sellers (600 in fast mode) and customers who bought at least 3 of
# them (a sample of 1,200 in fast mode). The `customer` column is the shop's account id (the reviewer id stands in for
# it) and `sku` the product. The first three rows get search queries, two of them with a phone number and an e-mail:
# real search logs hold plenty of those.
#
# Imported without `--no-pseudonymize`, soutui does two things **before anything is written**: user ids become
# `u_` + HMAC-SHA256(key, id), and e-mails, phone numbers, ID-card and payment-card numbers in text become placeholders
# such as `[EMAIL]` and `[PHONE]`. Without a key it refuses the import.

# %%
work = Path(tempfile.mkdtemp(prefix="lab11-"))  # the shop's own files, outside SOUTUI_HOME
events, _ = labkit.beauty_shop(labkit.budget(600, 3000), labkit.budget(1200, 10**6))
shop = pd.DataFrame({"customer": events.reviewer_id, "sku": events.asin, "time": events.ts})
shop["query"] = ""
shop.iloc[:3, 3] = ["lipstick for jane.doe@example.com", "call 13812345678 about the serum", "moisturiser"]
shop.to_csv(work / "events.csv", index=False)
imported = labkit.soutui("data", "import", "generic", "--events", str(work / "events.csv"), "--name", "shop11",
                         "--map", "user_id=customer,item_id=sku,ts=time,query=query", "--event-type", "purchase",
                         "--replace")
print("kept:", imported["rows_kept"], "\nprivacy:", imported["privacy"])

# %%
store = open_store(read_only=True)
stored = store.read("shop11", "events")
store.close()
alice, bob = shop.customer.value_counts().index[:2]  # two of the shop's most active customers
print("in the shop's file:", alice, "| in the store:", pseudonym(alice, KEY))
print("raw ids in the store:", int(stored.user_id.isin(shop.customer).sum()),
      "| pseudonyms:", int(stored.user_id.str.startswith("u_").sum()), "of", len(stored))
print("queries as stored:", stored["query"].dropna().head(3).tolist())
print("alice's stored events:", int((stored.user_id == pseudonym(alice, KEY)).sum()))

# %% [markdown] tags=["zh"]
# 库里没有一个原始 ID，查询里的手机号和邮箱也已经打了码。但要注意：假名**不是匿名**。同一个顾客永远得到同一个假名
# （所以重新导入、实时事件才能对上号），谁拿到密钥，就能把任何一个候选 ID 算成假名再去库里查——上面最后一行就是这么做的。
# 所以密钥只放在环境变量或密钥文件里，从不写进库；服务进程也要同一个密钥，没有它 `soutui serve` 拒绝启动，
# 免得原始 ID 和假名混在一起。

# %% [markdown] tags=["en"]
# No raw id is in the store, and the phone number and e-mail in the queries are masked. Mind that a pseudonym is
# **not anonymous**: a customer always gets the same pseudonym (that is how a re-import and live events line up), and
# whoever holds the key can turn any candidate id into its pseudonym and look it up, which is what the last line above
# does. So the key lives only in an environment variable or a key file, never in the store; the server needs the same
# key and `soutui serve` refuses to start without it, rather than mix raw ids with pseudonyms.

# %% [markdown] tags=["zh"]
# ## 被遗忘权：在运行中的服务上删除一个用户
#
# 打一个服务包（`--no-search`：这个实验不用搜索索引），启动 `soutui serve`。顾客 alice 接着又看了 30 次同一个冷门商品，
# 这些事件经 `POST /v1/events` 进来时，用户 ID 同样先变成假名，再写进落盘的事件日志和内存里的实时历史。
# 30 次浏览足以把那个商品顶上热门榜。

# %% [markdown] tags=["en"]
# ## The right to be forgotten: deleting a user from a running server
#
# Build a bundle (`--no-search`: this lab needs no search index) and start `soutui serve`. Customer alice then views
# one rarely bought product 30 times. Those events arrive through `POST /v1/events`, where the user id again becomes
# the pseudonym before the event is written to the on-disk event log and the in-memory history. Thirty views are
# enough to put the product at the top of trending.

# %%
built = labkit.soutui("bundle", "build", "--dataset", "shop11", "--no-search")
server = labkit.Server("--demo", "--insecure-dev", "--bundle", built["path"])
get, post = server.get, server.post


def delete(path):
    request = urllib.request.Request(server.base + path, method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


rare = shop.sku.value_counts().index[-1]
views = [{"event_id": str(uuid.uuid4()), "user_id": alice, "item_id": rare, "event_type": "view"} for _ in range(30)]
print("posted:", post("/v1/events", {"events": views}))
rec_before = get(f"/v1/recommend/{alice}", k=5)
trend_before = {it["item_id"]: it["score"] for it in get("/v1/trending", k=10)["items"]}
print(f"alice: model {rec_before['model']}, history {rec_before['history_length']}")
print(f"trending score of {rare}: {trend_before.get(rare, 0):.3f} (rank 1 is {next(iter(trend_before))})")

# %% [markdown] tags=["zh", "ex:11.1"]
# ### 练习 11.1：还有哪些文件记着这个人？
#
# 删完以后怎么确认“删干净了”？最笨也最可靠的办法：把 `SOUTUI_HOME` 下每个文件的字节都翻一遍，找原始 ID 和假名。
# 写 `files_holding(root, needles)`：返回 `root` 下（包括所有子目录）内容里含有 `needles` 中任意一个字符串的文件，
# 路径相对 `root`、用字符串表示（如 `"events/shop11.jsonl"`），每个文件列一次。
# 注意库文件是二进制的，而且可能很大。

# %% [markdown] tags=["en", "ex:11.1"]
# ### Exercise 11.1: which files still remember this person?
#
# After a deletion, how do you know it is complete? The bluntest and most reliable way: go through the bytes of every
# file under `SOUTUI_HOME` looking for the raw id and the pseudonym. Write `files_holding(root, needles)`: return the
# files under `root` (every subfolder included) whose content holds any string of `needles`, as paths relative to
# `root`, as strings (such as `"events/shop11.jsonl"`), each file once. Mind that a store file is binary, and may be
# large.

# %% tags=["exercise", "ex:11.1"]
def files_holding(root, needles):
    return [p.name for p in Path(root).iterdir() if p.is_file() and needles[0] in p.read_text()]  # your code here


# %%
traces_ok = privacy_checks.lab11_traces(files_holding)
needles = [alice, pseudonym(alice, KEY)]
if traces_ok:
    print("before the deletion, alice is in:", files_holding(HOME, needles))

# %%
gone = delete(f"/v1/users/{alice}")
print("DELETE /v1/users/alice ->", gone)
rec_after = get(f"/v1/recommend/{alice}", k=5)
trend_after = {it["item_id"]: it["score"] for it in get("/v1/trending", k=10)["items"]}
print(f"alice: model {rec_after['model']}, history {rec_after['history_length']}")
print(f"trending score of {rare}: {trend_before.get(rare, 0):.3f} -> {trend_after.get(rare, 0):.3f}")
if traces_ok:
    print("after the deletion, alice is in:", files_holding(HOME, needles))
server.stop()
forgot = labkit.soutui("data", "forget", "--dataset", "shop11", "--user", bob)
print("soutui data forget bob ->", forgot)
store = open_store(read_only=True)
left = store.read("shop11", "events").user_id
pending = store.pending_forget("shop11")
store.close()
print("events of alice / bob left:", int((left == pseudonym(alice, KEY)).sum()), int((left == pseudonym(bob, KEY)).sum()))
print("pending rebuilds:", [{k: str(v)[:16] for k, v in r.items()} for r in pending])

# %% [markdown] tags=["zh"]
# 一次 `DELETE` 同时清掉了：库里的事件和用户行（DuckDB 文件随后整个重写，因为删掉的值会留在空闲块里）、
# 事件日志（压实后原子替换，重启也回放不出来）、内存里的实时历史（alice 回到 `trending`、历史长度 0），
# 以及她在热门榜里的份额——那个冷门商品的分数掉回原处。按字节扫一遍，原始 ID 从头到尾不在任何文件里，
# 假名删之前在库和事件日志里，删之后哪里都找不到。
#
# 还剩什么：已经训练好的模型学到过她的行为（共现计数、热门度、SASRec 的权重）。服务包里没有用户 ID，
# 但它是用她的数据训出来的，所以库里记下一条“待重建”（只有加盐哈希，没有 ID），下一次 `soutui bundle build`
# 才算真正完成。审计表同样只存加盐哈希：能证明请求处理过，却不泄露是谁。

# %% [markdown] tags=["en"]
# One `DELETE` removed, at once: the events and the user row in the store (the DuckDB file is then rewritten whole,
# because deleted values linger in freed blocks), the event log (compacted and atomically replaced, so a restart cannot
# replay it), the live history (alice is back to `trending` with history length 0), and her share of trending: the
# rare product's score falls back. The byte scan finds the raw id in no file at any time; the pseudonym was in the store
# and the event log before, and is nowhere after.
#
# What remains: models already trained learned from her behaviour (co-occurrence counts, popularity, SASRec's weights).
# A bundle holds no user id, but it was fitted on her data, so the store records a pending rebuild (a salted hash, no
# id), and the deletion is complete only with the next `soutui bundle build`. The audit table keeps salted hashes too:
# it proves the request was handled without saying who it was.

# %% [markdown] tags=["zh"]
# ## 差分隐私训练：DP-SGD
#
# 假名和删除保护的是“数据放在哪里”，但模型本身也会记住训练数据。差分隐私给的是一个数学保证：加不加某一个用户，
# 训练结果的分布几乎一样（差别由 ε 和 δ 限定）。soutui 的 DP-SGD（`soutui/training/dp.py`，用 Opacus）以**一个用户**为单位：
# 每步每个用户以概率 q 被抽中（泊松抽样），每个用户的梯度裁剪到范数 `dp_clip`，再加上 σ × `dp_clip` 的高斯噪声。
# 给定目标 ε、δ 和计划步数，σ 由 Opacus 反解出来。
#
# 下面在这家小店上训练几个 SASRec：不同的 ε（快速模式两个），外加一个不加隐私的（ε = ∞），其余设置相同。快速模式每个私有模型只走 40 步，
# 数字只是演示；完整模式用 `docs/privacy.md` 的预算（Amazon Beauty，每个私有模型 30 步，不加隐私的给 2 分钟 CPU）。

# %% [markdown] tags=["en"]
# ## Differentially private training: DP-SGD
#
# Pseudonyms and deletion protect where the data lies, but a model remembers its training data too. Differential
# privacy gives a mathematical guarantee: with or without any one user, the distribution of the training outcome is
# almost the same (the difference bounded by epsilon and delta). soutui's DP-SGD (`soutui/training/dp.py`, through
# Opacus) takes **one user** as the unit: each step draws every user with probability q (Poisson sampling), clips each
# user's gradient to norm `dp_clip` and adds Gaussian noise of sigma x `dp_clip`. Given the target epsilon, delta and
# the planned steps, Opacus solves for sigma.
#
# Below, a few SASRec models train on the small shop: a few epsilons (two in fast mode) and one without privacy (eps = inf), all else
# equal. In fast mode a private model takes 40 steps only and its figures only illustrate; the full mode uses the
# budgets of `docs/privacy.md` (Amazon Beauty, 30 steps a private model, 2 CPU-minutes for the non-private one).

# %%
DP_DATA = labkit.budget("shop11", "amazon-beauty")
SMALL = labkit.budget({"d_model": 16, "n_layers": 1, "max_len": 10, "batch_size": 64},
                      {"d_model": 32, "n_heads": 2, "n_layers": 2, "max_len": 20, "batch_size": 128, "lr": 2e-3})
SMALL |= {"use_text": "false", "use_attrs": "false"}
NOT_PRIVATE = labkit.budget({"epochs": 3, "cooc_neighbors": 0, "cold_item_reset": "false"},
                            {"max_cpu_minutes": 2, "epochs": 200})
EPSILONS = labkit.budget([1, 8], [1, 4, 8])
runs = {}


def train(dataset, **params):
    """`soutui train --model sasrec` with these parameters; the same call twice trains once."""
    key = (dataset, tuple(sorted(params.items())))
    if key not in runs:
        sets = [a for k, v in params.items() for a in ("--set", f"{k}={v}")]
        runs[key] = labkit.soutui("train", "--dataset", dataset, "--model", "sasrec", *sets, "--no-onnx", echo=False)
    return runs[key]


curve = []
for eps in [*EPSILONS, math.inf]:
    extra = NOT_PRIVATE if math.isinf(eps) else {"dp_epsilon": eps, "dp_delta": 1e-4 if DP_DATA == "shop11" else 1e-5,
                                                 "dp_steps": labkit.budget(40, 30), "epochs": 10_000, "dp_head": 0}
    record = train(DP_DATA, **SMALL, **extra)
    p = record.get("privacy") or {}
    curve.append({"target eps": eps, "eps (RDP)": p.get("epsilon", math.inf), "sigma": p.get("noise_multiplier"),
                  "steps": p.get("steps"), "NDCG@10": record["metrics"]["test"]["NDCG@10"],
                  "HR@10": record["metrics"]["test"]["HR@10"],
                  "train CPU s": round(record["training"]["cpu_seconds"], 1)})
curve = pd.DataFrame(curve)
curve["vs eps=inf"] = (curve["NDCG@10"] / curve["NDCG@10"].iloc[-1]).round(2)
print(f"dataset {DP_DATA}, delta {1e-4 if DP_DATA == 'shop11' else 1e-5}, clip 1.0")
print(curve.to_string(index=False))
private = train(DP_DATA, **SMALL, dp_epsilon=EPSILONS[-1], dp_delta=1e-4 if DP_DATA == "shop11" else 1e-5,
                dp_steps=labkit.budget(40, 30), epochs=10_000, dp_head=0)["privacy"]
print(json.dumps(private, indent=1))

# %% [markdown] tags=["zh"]
# 记录里的 `privacy` 说清了一切：`epsilon` 是按实际走的步数由 RDP 记账器算出的（可能比目标略低），`noise_multiplier`
# 就是 σ，`sample_rate` 是 q，`max_grad_norm` 是裁剪界，`off_in_dp_mode` 列出为了不在 DP-SGD 之外偷用用户数据而关掉的部分
# （共现头、热门度先验、在验证集上选模型）。这里设了 `dp_head=0`，只看 DP-SGD 本身；默认情况下 SASRec 的共现头
# 不是关掉，而是拿出预算的一部分做一次私有发布（见 `docs/privacy.md`），记录里的 ε 就是两部分组合后的总数。

# %% [markdown] tags=["en"]
# The record's `privacy` says it all: `epsilon` is the RDP accountant's for the steps actually taken (possibly a little
# under the target), `noise_multiplier` is sigma, `sample_rate` is q, `max_grad_norm` the clipping bound, and
# `off_in_dp_mode` lists what is switched off so that no user data is used outside DP-SGD (the co-occurrence head, the
# popularity prior, choices made on validation). Here `dp_head=0` keeps to DP-SGD alone; by default SASRec's
# co-occurrence head is not switched off but released privately from a share of the budget (`docs/privacy.md`), and
# the record's epsilon is then the two parts composed.

# %% [markdown] tags=["zh", "ex:11.2"]
# ### 练习 11.2：从噪声算回 ε
#
# 别只信记录。写 `epsilon_for(sigma, q, steps, delta)`：用 Opacus 的 `RDPAccountant`，
# 给出噪声倍数 σ、抽样率 q 的高斯机制走了 `steps` 步之后，在 δ 下的 ε。检查会拿上面那次训练的记录来对。
# 提示：记账器的 `history` 是 `(噪声倍数, 抽样率, 步数)` 的列表，`get_epsilon(delta=...)` 给出 ε。

# %% [markdown] tags=["en", "ex:11.2"]
# ### Exercise 11.2: epsilon back from the noise
#
# Do not just trust the record. Write `epsilon_for(sigma, q, steps, delta)`: with Opacus's `RDPAccountant`, the
# epsilon at delta after `steps` steps of the Gaussian mechanism with noise multiplier sigma and sampling rate q. The
# check compares it with the record of the run above. Hint: the accountant's `history` is a list of
# `(noise multiplier, sample rate, steps)`, and `get_epsilon(delta=...)` gives epsilon.

# %% tags=["exercise", "ex:11.2"]
from opacus.accountants import RDPAccountant  # noqa: F401 - for your code


def epsilon_for(sigma, q, steps, delta):
    return steps * q / sigma  # your code here


# %%
if privacy_checks.lab11_epsilon(epsilon_for, private):
    q, steps, delta = private["sample_rate"], private["steps"], private["delta"]
    sigmas = np.linspace(0.5, 3.0, 26)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for n in (steps, 10 * steps, 100 * steps):
        ax1.plot(sigmas, [epsilon_for(s, q, n, delta) for s in sigmas], label=f"{n} steps")
    ax1.axvline(private["noise_multiplier"], color="grey", ls=":")
    ax1.set(yscale="log", xlabel="noise multiplier sigma", ylabel="epsilon (RDP)",
            title=f"more noise, less epsilon (q = {q:.3g}, delta = {delta:g})")
    ax1.legend()
    finite = curve[np.isfinite(curve["target eps"])]
    ax2.plot(finite["eps (RDP)"], finite["NDCG@10"], "o-", label="DP-SGD")
    ax2.axhline(curve["NDCG@10"].iloc[-1], color="#c44", ls="--", label="not private (eps = inf)")
    ax2.set(xscale="log", xlabel="epsilon", ylabel="test NDCG@10", title=f"utility ({DP_DATA}, {labkit.budget('fast', 'full')} mode)")
    ax2.legend()
    plt.tight_layout()
    plt.show()

# %% [markdown] tags=["zh"]
# 左图：噪声越大 ε 越小；同样的噪声，步数越多 ε 越大——隐私是会“花掉”的。右图是效果曲线。要诚实地读它：
# 快速模式几十步、一千多个用户，私有模型离收敛还远，曲线只说明流程跑通了、花了多少预算。
# `docs/privacy.md` 在 Amazon Beauty 上按议题的完整预算（每个私有模型 900 步，约等于本机两个线程 20 分钟的 CPU）
# 测过：ε = 8 时 SASRec 的 NDCG@10 是 0.0056，不加隐私是 0.0538，只保留了 10 %，和热门榜差不多——
# **议题的目标（ε = 8 时保留 70 %）没有达到**。噪声落在每个商品向量上，而一步里只有少数用户碰到某个商品；
# 更大的批、用公开的商品文本代替私有的 ID 表、更多步数（GPU 上逐用户梯度便宜得多）都是没测过的方向。
#
# 还要记得 DP-SGD 只管模型训练。用私有的 checkpoint 建包（`soutui bundle build --sasrec 运行目录`）时，包里才会一并处理别的部分：
# 去掉 item-kNN，热门度（也是新用户的 `trending` 兜底）改用加噪的计数发布，和 DP-SGD 一起记账（文档“Popularity and trending in DP mode”一节）。
# 本实验上面的包不是这样建的，它的热门榜就是精确计数——前面删除 alice 时你看到了一个人能把它推多高。评估数字和监控指标也始终是精确的，只给运营方看。

# %% [markdown] tags=["en"]
# Left: more noise, less epsilon; the same noise over more steps spends more epsilon, so privacy is a budget that runs
# out. Right, the utility curve. Read it honestly: a few dozen steps over about a thousand users leave the private
# models far from converged, so in fast mode the curve only shows that the pipeline runs and what it spent. In
# `docs/privacy.md`, at the full budget on Amazon Beauty (900 private steps, about 20 minutes of this machine's
# two threads), SASRec's NDCG@10 at eps = 8 is 0.0056 against 0.0538 without privacy: it keeps 10 %, about the level of
# item popularity, so **the goal (keep 70 % at eps = 8) is not met.** The noise lands on every item vector
# while a step holds only a few users who touch any one item; bigger batches, public item text instead of a private ID
# table, and more steps (per-user gradients are much cheaper on a GPU) are the untested ways forward.
#
# Remember too that DP-SGD covers the model's training. Only a bundle built from a private checkpoint
# (`soutui bundle build --sasrec RUN_DIR`) treats the rest: it leaves item-kNN out and releases popularity (also the
# `trending` fallback for new users) as noisy counts, accounted together with DP-SGD (the docs' section "Popularity and
# trending in DP mode"). The bundle above was not built that way and its trending list holds exact counts; you saw
# how far one person pushed it before alice was deleted. Evaluation figures and monitoring stay exact, for the operator.

# %% [markdown] tags=["zh"]
# ## 联邦学习：数据不出客户端
#
# 另一条路是根本不把数据集中起来。`soutui federated` 用 Flower 把用户随机分给 N 个客户端（像几家分店各管各的顾客），
# 每一轮：服务器下发全局参数，每个客户端在自己的用户上训练一个 epoch，只把参数（float32 张量）、用户数和平均损失传回，
# 服务器按用户数加权平均（FedAvg）。没有事件、没有用户 ID 离开客户端。但服务器仍能看到每个客户端各自的参数；
# 加 `--secure-aggregation`（Flower 的 SecAgg+，见 `docs/federated.md`）后，服务器只看到加了掩码的参数和它们的和。
#
# 比较要公平：集中训练用同样的模型、同样的总计算量（R 轮 × 1 个本地 epoch = R 个 epoch），同样关掉共现头和冷启动重置。

# %% [markdown] tags=["en"]
# ## Federated learning: the data stays on the clients
#
# The other road is never to pool the data at all. `soutui federated` uses Flower to split the users at random across
# N clients (like branches each holding their own customers). Every round the server sends the global parameters, each
# client trains one epoch on its own users and sends back only the parameters (float32 tensors), its user count and its
# mean loss, and the server averages them weighted by users (FedAvg). No event and no user id leaves a client. The
# server still sees each client's own parameters; with `--secure-aggregation` (Flower's SecAgg+, `docs/federated.md`)
# it sees only masked parameters and their sum.
#
# A fair comparison: centralised training gets the same model and the same total compute (R rounds x 1 local epoch =
# R epochs), with the co-occurrence head and cold-item reset off as well.

# %%
FED = labkit.budget({"dataset": "shop11", "clients": 3, "rounds": 3},
                    {"dataset": "amazon-beauty", "clients": 4, "rounds": 5})
FED_SMALL = labkit.budget(SMALL, {**SMALL, "use_attrs": "true"})  # the docs' run: ids + attributes, no titles
sets = [a for k, v in FED_SMALL.items() for a in ("--set", f"{k}={v}")]
fed = labkit.soutui("federated", "--dataset", FED["dataset"], "--clients", str(FED["clients"]),
                    "--rounds", str(FED["rounds"]), *sets)
central = train(FED["dataset"], **FED_SMALL, epochs=FED["rounds"], cooc_neighbors=0, cold_item_reset="false")
print(pd.DataFrame(fed["rounds"]).to_string(index=False))
print("a client sends:", len(fed["param_shapes"]), "tensors, shapes", fed["param_shapes"][:4], "...")
both = pd.DataFrame([{"setting": "centralised", "NDCG@10": central["metrics"]["test"]["NDCG@10"],
                      "HR@10": central["metrics"]["test"]["HR@10"]},
                     {"setting": f"federated, {FED['clients']} clients", "NDCG@10": fed["metrics"]["test"]["NDCG@10"],
                      "HR@10": fed["metrics"]["test"]["HR@10"]}])
both["vs centralised"] = (both["NDCG@10"] / both["NDCG@10"].iloc[0]).round(2)
print(both.to_string(index=False))

# %% [markdown] tags=["zh", "ex:11.3"]
# ### 练习 11.3：每轮传多少字节
#
# 记录里的 `param_shapes` 是客户端上传的每个张量的形状。写 `bytes_per_round(param_shapes, clients)`：一轮里所有客户端
# 上传加下载的总字节数。参数是 float32；每个张量按 numpy 的 `.npy` 格式打包，除了数据还有一个 128 字节的头（形状和类型）。
# 检查会和记录里的 `bytes_per_round` 对。

# %% [markdown] tags=["en", "ex:11.3"]
# ### Exercise 11.3: bytes per round
#
# The record's `param_shapes` are the shapes of the tensors a client uploads. Write
# `bytes_per_round(param_shapes, clients)`: the bytes all clients upload plus download in one round. The parameters are
# float32; each tensor travels in numpy's `.npy` framing, which adds a 128-byte header (shape and dtype) to the data.
# The check compares it with the record's `bytes_per_round`.

# %% tags=["exercise", "ex:11.3"]
def bytes_per_round(param_shapes, clients):
    return clients * sum(np.prod(s) for s in param_shapes)  # your code here


# %%
if privacy_checks.lab11_bytes(bytes_per_round, fed):
    item_table = max(fed["param_shapes"], key=lambda s: math.prod(s))
    print(f"record: {fed['bytes_per_round']:,} bytes a round; the item table {item_table} alone is "
          f"{4 * math.prod(item_table) / (fed['bytes_per_round'] / (2 * FED['clients'])):.0%} of a client's upload")
    clients = [1, 2, 4, 8, 16, 32]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(clients, [bytes_per_round(fed["param_shapes"], n) / 1e6 for n in clients], "o-", label="this model")
    ax.set(xlabel="clients", ylabel="MB per round (up + down)", title="federated traffic grows with the clients")
    ax.legend()
    plt.tight_layout()
    plt.show()
cpu = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"lab ran in {time.perf_counter() - t_lab:.0f} s wall, {sum(r.ru_utime + r.ru_stime for r in cpu):.0f} CPU-s "
      f"(this kernel and the soutui commands it ran; load average {os.getloadavg()[0]:.1f}: the wall time depends on it)")

# %% [markdown] tags=["zh"]
# 流量几乎全是商品表（每个商品一行 d 维向量），所以它随商品数、向量维度、客户端数线性增长，和客户端有多少用户无关。
# 效果上，`docs/federated.md` 在 Amazon Beauty 上的记录是：5 轮后 4 个客户端的 NDCG@10 只有集中训练的 **51 %**，
# 16 个客户端 38 %，**没有达到议题“差距在 15 % 以内”的目标**。5 个 epoch 离收敛很远，更多轮次应当缩小差距，
# 但那个更长的实验还没跑过，这只是推测。快速模式的小店上数字会不同，只作演示。

# %% [markdown] tags=["en"]
# The traffic is almost all the item table (one d-dimensional row per product), so it grows linearly with the
# catalogue, the vector width and the number of clients, and not with how many users a client holds. On quality,
# `docs/federated.md` records on Amazon Beauty that after 5 rounds 4 clients reach **51 %** of the centralised NDCG@10
# and 16 clients 38 %: **the goal (within 15 %) is not met.** Five epochs are far from convergence and more
# rounds should narrow the gap, but that longer run has not been done, so it is a guess. The small shop of the fast
# mode gives other figures, which only illustrate.

# %% [markdown] tags=["zh"]
# ## 小结
#
# - 入口处：HMAC 假名 + 文本打码，写盘前完成；假名不等于匿名，密钥要保管好。
# - 删除：`DELETE /v1/users/{id}` 一次清掉库、事件日志、实时历史、热门计数和缓存，按字节扫描可以验证；
#   模型里学到的东西要等下一次建包，库里记着“待重建”。
# - DP-SGD：ε 由噪声、抽样率和步数决定，可以用 Opacus 的记账器独立复算；小预算下效果接近随机，完整预算下 ε = 8 也只有热门榜的水平。
# - 联邦学习：数据不出客户端，每轮传的是参数（主要是商品表）；按文档的预算，效果明显低于集中训练。
# 种子说“在保证推荐效果的同时保护隐私”——这几条手段都有代价，实验把代价摆在了桌面上。

# %% [markdown] tags=["en"]
# ## Summary
#
# - At the door: HMAC pseudonyms and text masking, before anything is written; a pseudonym is not anonymous, so guard
#   the key.
# - Deletion: `DELETE /v1/users/{id}` clears the store, the event log, the live history, the trending counts and the
#   caches at once, which a byte scan can verify; what models learned goes with the next bundle, recorded as pending.
# - DP-SGD: epsilon follows from the noise, the sampling rate and the steps, and Opacus's accountant recomputes it
#   independently; at small budgets the utility is near random, and at the full budget eps = 8 is at popularity level.
# - Federated learning: the data stays on the clients, the parameters travel (mostly the item table); at the docs'
#   budget the result is well below centralised training.
# The seed asks for privacy "while keeping recommendations good": each of these has a cost, and this lab puts it on
# the table.
